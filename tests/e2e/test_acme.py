"""A real ACME exchange, offline: the Traefik and Pebble that `lab build` builds, as the lab runs
them (fireproof.lab.acme's configuration), without Kubernetes in between.

Traefik asks Pebble for a certificate for each site; Pebble resolves the names through
pebble-challtestsrv and validates TLS-ALPN-01 against Traefik's own HTTPS port; Traefik stores
the results in acme.json and serves the sites with them. This is the report's Traefik:
certificates from Let's Encrypt, kept in one file on one volume.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography import x509

from acmetools import BODY, issued

SITES = ["blog.tazlab.test", "photos.tazlab.test"]


def test_traefik_gets_its_certificates_from_pebble_and_keeps_them_in_acme_json(
    tmp_path: Path,
) -> None:
    result = issued(tmp_path, SITES, resolver="le")
    for site in SITES:
        page = result.pages[site]
        assert page.startswith(b"HTTP/1.1 200"), page
        assert page.endswith(BODY)
        names = result.served[site].extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert names.value.get_values_for_type(x509.DNSName) == [site]
    # acme.json is where the certificates live: the ones served are the ones stored.
    stored = json.loads(result.storage.read_text())["le"]["Certificates"]
    assert sorted(c["domain"]["main"] for c in stored) == sorted(SITES)
    for entry in stored:
        pem = base64.b64decode(entry["certificate"])
        serial = x509.load_pem_x509_certificates(pem)[0].serial_number
        assert serial == result.served[entry["domain"]["main"]].serial_number
    assert "Pebble" in (result.logs / "pebble.log").read_text()
