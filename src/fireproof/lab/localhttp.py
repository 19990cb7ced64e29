"""HTTP clients for the lab's plain-HTTP endpoints on 127.0.0.1 (agent, etcd, probes)."""

from __future__ import annotations

import functools
import ssl

import httpx2 as httpx


@functools.cache
def _no_tls() -> ssl.SSLContext:
    # httpx loads the whole CA bundle for every client it makes (about 0.1 s of CPU), even for
    # http:// URLs. The lab's CLI commands make several clients each and the tests run hundreds
    # of them on 2 cores. This context trusts no CA: it is never used for http://, and would
    # refuse any TLS peer if it ever were.
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def plain_client(timeout: float) -> httpx.Client:
    """A client for an http:// endpoint of the lab: no proxy from the environment, no CA load."""
    return httpx.Client(verify=_no_tls(), timeout=httpx.Timeout(timeout), trust_env=False)
