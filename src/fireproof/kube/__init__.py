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
from fireproof.kube.cluster import (
    Cluster,
    internal_ip,
    is_control_plane,
    lease_fresh,
    node_ready,
    now_rfc3339,
    pod_running_ready,
    ready_since,
    system_uuid,
)

__all__ = [
    "Cluster",
    "KubeApiError",
    "KubeConflictError",
    "KubeNotFoundError",
    "KubeUnreachableError",
    "async_client",
    "internal_ip",
    "is_control_plane",
    "lease_fresh",
    "load_kubeconfig",
    "node_ready",
    "now_rfc3339",
    "pod_running_ready",
    "ready_since",
    "sync_client",
    "system_uuid",
    "translate_errors",
]
