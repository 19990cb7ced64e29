"""Readiness probes for the lab's components, all on 127.0.0.1."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx

from fireproof.errors import TransientError
from fireproof.lab.localhttp import plain_client
from fireproof.lab.pki import ADMIN
from fireproof.lab.state import LabPaths


class NotReadyError(TransientError):
    """A component did not become ready in time."""


def _tls_client(paths: LabPaths) -> httpx.Client:
    pki = paths.pki
    admin = pki.client(ADMIN)
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(admin.cert), str(admin.key))
    return httpx.Client(
        verify=context,
        timeout=httpx.Timeout(3.0),
        trust_env=False,
    )


def probe(url: str, paths: LabPaths | None = None) -> bool:
    """True when ``url`` answers 200 (TLS with the lab's CA and admin cert for https)."""
    try:
        if url.startswith("https://"):
            assert paths is not None  # noqa: S101 - callers pass paths for https
            with _tls_client(paths) as client:
                return client.get(url).status_code == 200
        with plain_client(3.0) as client:
            return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    log: Path | None = None,
    interval: float = 0.2,
) -> None:
    """Poll ``check`` until it holds; fail early when the process behind it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise NotReadyError(f"{what} exited during start-up{_tail(log)}")
        time.sleep(interval)
    raise NotReadyError(f"{what} was not ready after {timeout:.0f} s{_tail(log)}")


def _tail(log: Path | None, lines: int = 8) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return f"; last lines of {log}:\n  " + "\n  ".join(text)
