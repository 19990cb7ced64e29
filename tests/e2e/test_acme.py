"""A real ACME exchange, offline: the Traefik and Pebble that `lab build` builds, as the lab runs
them (fireproof.lab.acme's configuration), without Kubernetes in between.

Traefik asks Pebble for a certificate for a site; Pebble resolves the name through
pebble-challtestsrv and validates TLS-ALPN-01 against Traefik's own HTTPS port; Traefik stores
the result in acme.json and serves the site with it. This is the report's Traefik: certificates
from Let's Encrypt, kept in one file on one volume.
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

import pytest
import yaml
from cryptography import x509

from fireproof.lab import gotools
from fireproof.lab.acme import ENV, AcmePorts, AcmeServer
from fireproof.lab.pki import LabPKI

from guardtools import free_port
from labtools import wait_for

SITE = "blog.tazlab.test"
BODY = b"the blog, through the real Traefik\n"


class _Blog(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def _process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[IO[str]]:
    with log.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            yield out
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


def _served(port: int, root: Path) -> tuple[x509.Certificate, bytes] | None:
    """The certificate the site is served with and its page, if it verifies against `root`."""
    context = ssl.create_default_context(cafile=str(root))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=SITE) as tls,
        ):
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None  # Traefik's default certificate, until Pebble's arrives
    assert der is not None
    return x509.load_der_x509_certificate(der), answer


@pytest.fixture
def blog() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Blog)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_traefik_gets_its_certificate_from_pebble_and_keeps_it_in_acme_json(
    tmp_path: Path, blog: int
) -> None:
    web, websecure = free_port(), free_port()
    ports = AcmePorts(
        directory=free_port(),
        management=free_port(),
        dns=free_port(),
        dns_management=free_port(),
        http_challenge=web,
        tls_challenge=websecure,
    )
    acme = AcmeServer(tmp_path / "acme", LabPKI(tmp_path / "pki"), ports)
    acme.write_config()
    storage = tmp_path / "volume" / "acme.json"
    storage.parent.mkdir()
    static = tmp_path / "traefik.yaml"
    dynamic = tmp_path / "dynamic.yaml"
    static.write_text(
        yaml.safe_dump(
            {
                "entryPoints": {
                    "web": {"address": f"127.0.0.1:{web}"},
                    "websecure": {"address": f"127.0.0.1:{websecure}"},
                },
                "providers": {"file": {"filename": str(dynamic)}},
                "certificatesResolvers": {
                    "pebble": {
                        "acme": {
                            "email": "admin@tazlab.test",
                            "storage": str(storage),
                            "caServer": acme.directory_url,
                            "caCertificates": [str(acme.pki.acme_listener_ca.cert)],
                            "tlsChallenge": {},
                        }
                    }
                },
                "log": {"level": "INFO"},
            }
        )
    )
    dynamic.write_text(
        yaml.safe_dump(
            {
                "http": {
                    "routers": {
                        "blog": {
                            "rule": f"Host(`{SITE}`)",
                            "entryPoints": ["websecure"],
                            "service": "blog",
                            "tls": {"certResolver": "pebble"},
                        }
                    },
                    "services": {
                        "blog": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{blog}"}]}}
                    },
                }
            }
        )
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        dns = gotools.locate(gotools.CHALLTESTSRV)
        stack.enter_context(_process(acme.challtestsrv_argv(dns), logs / "challtestsrv.log"))
        pebble = gotools.locate(gotools.PEBBLE)
        stack.enter_context(
            _process(acme.pebble_argv(pebble), logs / "pebble.log", {**_env(), **ENV})
        )
        wait_for("Pebble's root", lambda: _root(acme), timeout=60)
        traefik = gotools.locate(gotools.TRAEFIK)
        stack.enter_context(
            _process([str(traefik), f"--configFile={static}"], logs / "traefik.log")
        )
        cert, page = wait_for(
            "the site served with Pebble's certificate",
            lambda: _served(websecure, acme.root_file),
            timeout=120,
            interval=1,
        )
    assert page.startswith(b"HTTP/1.1 200"), page
    assert page.endswith(BODY)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [SITE]
    # acme.json is where the certificate lives: the one served is the one stored.
    stored = json.loads(storage.read_text())["pebble"]["Certificates"]
    assert [c["domain"]["main"] for c in stored] == [SITE]
    pem = base64.b64decode(stored[0]["certificate"])
    assert x509.load_pem_x509_certificates(pem)[0].serial_number == cert.serial_number
    assert "Pebble" in (logs / "pebble.log").read_text()


def _root(acme: AcmeServer) -> bool:
    try:
        acme.fetch_root(timeout=5)
    except OSError:
        return False
    return True


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
