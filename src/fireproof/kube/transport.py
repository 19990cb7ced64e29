"""The one place fireproof reaches inside lightkube: its authenticated HTTP client.

lightkube has no call for ``/version``, sends no body with DELETE (so no UID precondition), and
has no request hook; its httpx client, already authenticated from the kubeconfig, does all
three. A lightkube release that moves it breaks :func:`http_client` and its unit test, not a
remediation half-way through.
"""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import lightkube


def http_client(client: lightkube.Client) -> httpx.Client:
    """The authenticated HTTP client behind a lightkube client (base URL: the API server)."""
    inner: Any = getattr(client, "_client", None)
    transport = getattr(inner, "_client", None)
    if not isinstance(transport, httpx.Client):
        raise TypeError(
            "lightkube.Client no longer keeps its HTTP client at ._client._client; "
            "fireproof.kube.transport must follow it"
        )
    return transport
