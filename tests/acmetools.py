"""Real ACME, offline, for tests: the Traefik and Pebble that `lab build` builds, configured as
the lab runs them (fireproof.lab.acme), with Traefik's file provider instead of Kubernetes.

`issued(tmp_path, sites, resolver)` runs them until Traefik serves every site with a
certificate from Pebble, and gives back the acme.json Traefik wrote: the real file a migration
reads."""

from __future__ import annotations

import http.server
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml
from cryptography import x509

from fireproof.lab import gotools
from fireproof.lab.acme import ENV, AcmePorts, AcmeServer
from fireproof.lab.pki import LabPKI

from guardtools import free_port
from labtools import wait_for

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
def blog() -> Iterator[int]:
    """A small real backend on 127.0.0.1; yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Blog)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[IO[str]]:
    with log.open("w") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            yield out
        finally:
            child.terminate()
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=20)


def served(port: int, site: str, root: Path) -> tuple[x509.Certificate, bytes] | None:
    """The certificate ``site`` is served with and its page, if it verifies against ``root``."""
    context = ssl.create_default_context(cafile=str(root))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=site) as tls,
        ):
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {site}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None  # Traefik's default certificate, until Pebble's arrives
    assert der is not None
    return x509.load_der_x509_certificate(der), answer


@dataclass(frozen=True)
class Issued:
    storage: Path
    """The acme.json Traefik wrote."""
    acme: AcmeServer
    served: dict[str, x509.Certificate]
    """Each site's certificate as Traefik served it."""
    pages: dict[str, bytes]
    logs: Path


def issued(tmp_path: Path, sites: list[str], resolver: str = "le") -> Issued:
    """Run Pebble, its DNS server and Traefik until every site is served with a certificate
    from Pebble (TLS-ALPN-01), then stop them."""
    web, websecure = free_port(), free_port()
    ports = AcmePorts(free_port(), free_port(), free_port(), free_port(), web, websecure)
    acme = AcmeServer(tmp_path / "acme", LabPKI(tmp_path / "pki"), ports)
    acme.write_config()
    storage = tmp_path / "volume" / "acme.json"
    storage.parent.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        backend = stack.enter_context(blog())
        static = _traefik_config(tmp_path, acme, storage, resolver, sites, backend, web, websecure)
        dns = gotools.locate(gotools.CHALLTESTSRV)
        stack.enter_context(process(acme.challtestsrv_argv(dns), logs / "challtestsrv.log"))
        pebble = gotools.locate(gotools.PEBBLE)
        env = {**os.environ, **ENV}
        stack.enter_context(process(acme.pebble_argv(pebble), logs / "pebble.log", env))
        wait_for("Pebble's root", acme.root_ready, timeout=60)
        traefik = gotools.locate(gotools.TRAEFIK)
        stack.enter_context(process([str(traefik), f"--configFile={static}"], logs / "traefik.log"))
        answers = {
            site: wait_for(
                f"{site} served with Pebble's certificate",
                lambda site=site: served(websecure, site, acme.root_file),
                timeout=120,
                interval=1,
            )
            for site in sites
        }
        # Traefik writes acme.json a moment after it serves: wait until every site is stored.
        wait_for("acme.json with every site", lambda: _stored(storage, resolver) >= set(sites))
    return Issued(
        storage,
        acme,
        {s: a[0] for s, a in answers.items()},
        {s: a[1] for s, a in answers.items()},
        logs,
    )


def _stored(storage: Path, resolver: str) -> set[str]:
    import json

    try:
        document = json.loads(storage.read_text())
    except (OSError, ValueError):
        return set()
    entries = (document.get(resolver) or {}).get("Certificates") or []
    return {c["domain"]["main"] for c in entries}


def _traefik_config(
    tmp_path: Path,
    acme: AcmeServer,
    storage: Path,
    resolver: str,
    sites: list[str],
    backend: int,
    web: int,
    websecure: int,
) -> Path:
    static, dynamic = tmp_path / "traefik.yaml", tmp_path / "dynamic.yaml"
    acme_settings = {
        "email": "admin@tazlab.test",
        "storage": str(storage),
        "caServer": acme.directory_url,
        "caCertificates": [str(acme.pki.acme_listener_ca.cert)],
        "tlsChallenge": {},
    }
    static.write_text(
        yaml.safe_dump(
            {
                "entryPoints": {
                    "web": {"address": f"127.0.0.1:{web}"},
                    "websecure": {"address": f"127.0.0.1:{websecure}"},
                },
                "providers": {"file": {"filename": str(dynamic)}},
                "certificatesResolvers": {resolver: {"acme": acme_settings}},
                "log": {"level": "INFO"},
            }
        )
    )
    routers = {
        site.split(".")[0]: {
            "rule": f"Host(`{site}`)",
            "entryPoints": ["websecure"],
            "service": "blog",
            "tls": {"certResolver": resolver},
        }
        for site in sites
    }
    service = {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{backend}"}]}}
    dynamic.write_text(
        yaml.safe_dump({"http": {"routers": routers, "services": {"blog": service}}})
    )
    return static
