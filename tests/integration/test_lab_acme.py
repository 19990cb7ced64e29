"""The lab's ACME server: Pebble and its DNS server run beside the control plane, and
`lab status -o json` says where, with the files a client needs (`curl --cacert`)."""

from __future__ import annotations

import json
import ssl
import urllib.request

import pytest
from cryptography import x509

from labtools import LabHandle

pytestmark = pytest.mark.lab


def test_the_lab_runs_pebble_and_status_names_its_url_and_root(lab: LabHandle) -> None:
    status = json.loads(lab.cli("lab", "status", "-o", "json").stdout)
    acme = status["acme"]
    components = {c["name"]: c for c in status["components"]}
    assert components["pebble"]["running"]
    assert components["pebble-challtestsrv"]["running"]
    assert components["pebble"]["endpoint"] == acme["directory"]
    # The ACME directory, over HTTPS verified with the lab's listener CA, as an ACME client
    # (Traefik, cert-manager) sees it.
    assert acme["directory"].startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=acme["listener_ca"])
    url = acme["directory"]
    with urllib.request.urlopen(url, timeout=10, context=context) as answer:  # noqa: S310 (https)
        directory = json.loads(answer.read())
    assert {"newAccount", "newNonce", "newOrder"} <= set(directory)
    assert directory["newOrder"].startswith("https://127.0.0.1:")
    # The root the sites' certificates chain to: a CA, for `curl --cacert`.
    with open(acme["root_certificate"], "rb") as pem:
        root = x509.load_pem_x509_certificate(pem.read())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "Pebble" in root.subject.rfc4514_string()
