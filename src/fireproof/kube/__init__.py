"""The only package that talks to the Kubernetes API library.

Callers get clients built from a kubeconfig and errors from :mod:`fireproof.errors`; the HTTP
and client libraries stay behind this seam.
"""

from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Pod

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
    lease_spec,
    new_lease,
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
    "Lease",
    "Node",
    "Pod",
    "async_client",
    "internal_ip",
    "is_control_plane",
    "lease_fresh",
    "lease_spec",
    "load_kubeconfig",
    "new_lease",
    "node_ready",
    "now_rfc3339",
    "pod_running_ready",
    "ready_since",
    "sync_client",
    "system_uuid",
    "translate_errors",
]
