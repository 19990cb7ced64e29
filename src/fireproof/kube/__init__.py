"""The only package that talks to the Kubernetes API library.

Callers get clients built from a kubeconfig and errors from :mod:`fireproof.errors`; the HTTP
and client libraries stay behind this seam.
"""

from fireproof.kube.client import (
    KubeApiError,
    KubeConflictError,
    KubeNotFoundError,
    KubeUnreachableError,
    async_client,
    load_kubeconfig,
    sync_client,
    translate_errors,
)

__all__ = [
    "KubeApiError",
    "KubeConflictError",
    "KubeNotFoundError",
    "KubeUnreachableError",
    "async_client",
    "load_kubeconfig",
    "sync_client",
    "translate_errors",
]
