"""The lab's ACME server: Let's Encrypt's Pebble, with pebble-challtestsrv answering its DNS.

Pebble validates a challenge as Let's Encrypt does: it resolves the site's name (through
challtestsrv, which answers every name with 127.0.0.1, the lab's ingress address) and connects
there, HTTP-01 on ``http_challenge`` and TLS-ALPN-01 on ``tls_challenge``: the ingress's ports 80
and 443. Its issuing root is made anew at every start and served on the management port
(``/roots/0``); the lab writes it to ``root_file`` so that a client can verify the sites
(``curl --cacert``). ACME clients trust Pebble's own HTTPS listener through the lab's
``acme_listener_ca``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fireproof.lab.ports import allocate

if TYPE_CHECKING:  # cryptography loads when the PKI is used, not for every `lab` command
    from fireproof.lab.pki import LabPKI

ENV = {
    # Validate at once: Pebble otherwise sleeps 0-15 s before each validation, to shake out
    # clients that assume an instant answer. The lab measures the ingress, not the client.
    "PEBBLE_VA_NOSLEEP": "1",
    # Pebble rejects 5 % of nonces by default to test clients' retries; lego retries them, but
    # each one is a round trip that the lab's timings do not need.
    "PEBBLE_WFE_NONCEREJECT": "0",
}


def acme_env() -> dict[str, str]:
    """Pebble's environment: this process's, with the lab's settings above."""
    return {**os.environ, **ENV}


@dataclass(frozen=True, slots=True)
class AcmePorts:
    directory: int
    """The ACME API: ``https://127.0.0.1:PORT/dir``."""
    management: int
    """Pebble's management API (its roots and intermediates)."""
    dns: int
    """challtestsrv's DNS server, Pebble's resolver."""
    dns_management: int
    """challtestsrv's management API."""
    http_challenge: int
    """Where Pebble connects for HTTP-01: the ingress's plain HTTP port."""
    tls_challenge: int
    """Where Pebble connects for TLS-ALPN-01: the ingress's HTTPS port."""

    @classmethod
    def allocate(cls, taken: set[int]) -> AcmePorts:
        free = allocate(6, taken)
        return cls(*free)

    def as_dict(self) -> dict[str, int]:
        return {
            "directory": self.directory,
            "management": self.management,
            "dns": self.dns,
            "dns_management": self.dns_management,
            "http_challenge": self.http_challenge,
            "tls_challenge": self.tls_challenge,
        }


@dataclass(frozen=True, slots=True)
class AcmeServer:
    directory: Path
    """Where its configuration, and the issuing root once fetched, are written."""
    pki: LabPKI
    ports: AcmePorts

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.directory}/dir"

    @property
    def root_file(self) -> Path:
        """Pebble's issuing root, for clients of the sites (written by `fetch_root`)."""
        return self.directory / "acme-root.pem"

    @property
    def config_file(self) -> Path:
        return self.directory / "pebble.json"

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.pki.acme_listener.cert.is_file():
            self.pki.generate_acme()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.ports.directory}",
                "managementListenAddress": f"127.0.0.1:{self.ports.management}",
                "certificate": str(self.pki.acme_listener.cert),
                "privateKey": str(self.pki.acme_listener.key),
                "httpPort": self.ports.http_challenge,
                "tlsPort": self.ports.tls_challenge,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "retryAfter": {"authz": 1, "order": 1},
                "keyAlgorithm": "ecdsa",
                "profiles": {"default": {"description": "the lab's", "validityPeriod": 7776000}},
            }
        }
        self.config_file.write_text(json.dumps(config, indent=2))

    def pebble_argv(self, binary: Path) -> list[str]:
        return [
            str(binary),
            "-config",
            str(self.config_file),
            "-dnsserver",
            f"127.0.0.1:{self.ports.dns}",
        ]

    def challtestsrv_argv(self, binary: Path) -> list[str]:
        # Only DNS and its management API: the challenges themselves are answered by the
        # ingress, as on the Internet. An empty address turns a challenge server off.
        return [
            str(binary),
            "-dnsserver",
            f"127.0.0.1:{self.ports.dns}",
            "-management",
            f"127.0.0.1:{self.ports.dns_management}",
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-doh",
            "",
        ]

    def root_ready(self) -> bool:
        """Whether Pebble answers; its root is then in ``root_file``."""
        try:
            self.fetch_root(timeout=5)
        except OSError:
            return False
        return True

    def fetch_root(self, timeout: float = 10.0) -> bytes:
        """Pebble's issuing root (its listener verified), also written to ``root_file``."""
        import ssl
        import urllib.request

        context = ssl.create_default_context(cafile=str(self.pki.acme_listener_ca.cert))
        url = f"https://127.0.0.1:{self.ports.management}/roots/0"
        with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:
            pem: bytes = answer.read()
        self.root_file.write_bytes(pem)
        return pem
