"""One read of the cluster for the doctor: one list call per resource kind, never one per object.

A kind the credentials may not read (403) or that the cluster does not serve (404, e.g.
Longhorn's CRDs) is recorded in :attr:`Snapshot.missing` with the reason, so checks that need
it report "not checked" instead of "healthy".
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import lightkube
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import (
    Endpoints,
    Event,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    Pod,
)
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.resources.storage_v1 import VolumeAttachment

from fireproof.kube.client import KubeApiError, KubeNotFoundError
from fireproof.kube.cluster import Cluster
from fireproof.kube.transport import http_client

LonghornSetting = create_namespaced_resource(
    "longhorn.io", "v1beta2", "Setting", "settings", verbs=["get", "list", "global_list"]
)

# kind -> (resource, namespaced)
KINDS: dict[str, tuple[Any, bool]] = {
    "nodes": (Node, False),
    "pods": (Pod, True),
    "events": (Event, True),
    "volumeattachments": (VolumeAttachment, False),
    "persistentvolumes": (PersistentVolume, False),
    "persistentvolumeclaims": (PersistentVolumeClaim, True),
    "deployments": (Deployment, True),
    "statefulsets": (StatefulSet, True),
    "daemonsets": (DaemonSet, True),
    "horizontalpodautoscalers": (HorizontalPodAutoscaler, True),
    "poddisruptionbudgets": (PodDisruptionBudget, True),
    "longhorn-settings": (LonghornSetting, True),
}


@dataclass
class Snapshot:
    items: dict[str, list[Any]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    """kind -> why it could not be read."""
    endpoints: list[str] | None = None
    """Addresses of the `kubernetes` Endpoints (None if unreadable)."""
    requests: int = 0
    taken_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def get(self, kind: str) -> list[Any]:
        return self.items.get(kind, [])


def take_snapshot(
    cluster: Cluster,
    namespace: str | None = None,
    kinds: set[str] | None = None,
    *,
    endpoints: bool = True,
) -> Snapshot:
    """List ``kinds`` (default: all) once each, and read the `kubernetes` Endpoints."""
    with _count_requests(cluster) as counter:
        return _take(cluster, namespace, kinds, endpoints, counter)


def _take(
    cluster: Cluster,
    namespace: str | None,
    kinds: set[str] | None,
    endpoints: bool,
    counter: Callable[[], int],
) -> Snapshot:
    snap = Snapshot()
    for kind, (resource, namespaced) in KINDS.items():
        if kinds is not None and kind not in kinds:
            continue
        ns = (namespace or lightkube.ALL_NS) if namespaced else None
        try:
            with cluster._guard():  # same package: one error translation
                snap.items[kind] = list(
                    cluster.client.list(resource, namespace=ns, chunk_size=2000)
                    if namespaced
                    else cluster.client.list(resource, chunk_size=2000)
                )
        except KubeNotFoundError:
            snap.missing[kind] = "not served by this cluster"
        except KubeApiError as exc:
            if exc.status in (401, 403):
                snap.missing[kind] = f"forbidden: {exc.message}"
            else:
                raise
    if not endpoints:
        snap.requests = counter()
        return snap
    try:
        with cluster._guard():
            ep = cluster.client.get(Endpoints, "kubernetes", namespace="default")
        snap.endpoints = [a.ip for s in (ep.subsets or []) for a in (s.addresses or [])]
    except KubeApiError as exc:
        snap.missing["endpoints"] = (
            f"forbidden: {exc.message}" if exc.status in (401, 403) else exc.message
        )
    snap.requests = counter()
    return snap


@contextlib.contextmanager
def _count_requests(cluster: Cluster) -> Iterator[Callable[[], int]]:
    """Count the HTTP requests the client sends (list pages included) inside the block.

    The hook is removed on the way out: a long-running process (guard) takes a snapshot per
    loop and must not pile up hooks on its one client.
    """
    transport = http_client(cluster.client)
    sent = [0]

    def hook(_request: Any) -> None:
        sent[0] += 1

    hooks = transport.event_hooks
    hooks.setdefault("request", []).append(hook)
    transport.event_hooks = hooks
    try:
        yield lambda: sent[0]
    finally:
        hooks = transport.event_hooks
        hooks["request"] = [h for h in hooks.get("request", []) if h is not hook]
        transport.event_hooks = hooks
