"""One read of the cluster for the doctor: one list call per resource kind, never one per object.

A kind the credentials may not read (403) or that the cluster does not serve (404, e.g.
Longhorn's CRDs) is recorded in :attr:`Snapshot.missing` with the reason, so checks that need
it report "not checked" instead of "healthy".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
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

PAGE = 500
"""Items per list request (``limit``/``continue``): a page is read, pruned and dropped before
the next, so memory follows the compact result, not the cluster's raw size."""


@dataclass(frozen=True, slots=True)
class Kind:
    resource: Any
    api: str
    """``/api/v1`` or ``/apis/GROUP/VERSION``."""
    plural: str
    namespaced: bool
    fields: str | None = None
    """A field selector the API server applies: only what the checks read is sent."""


# kind -> how to list it
KINDS: dict[str, Kind] = {
    "nodes": Kind(Node, "/api/v1", "nodes", False),
    "pods": Kind(Pod, "/api/v1", "pods", True),
    # Only FP-N3 reads events, and only the attach/detach controller's refusals: a busy
    # cluster has tens of thousands of other events.
    "events": Kind(Event, "/api/v1", "events", True, fields="reason=FailedAttachVolume"),
    "volumeattachments": Kind(
        VolumeAttachment, "/apis/storage.k8s.io/v1", "volumeattachments", False
    ),
    "persistentvolumes": Kind(PersistentVolume, "/api/v1", "persistentvolumes", False),
    "persistentvolumeclaims": Kind(
        PersistentVolumeClaim, "/api/v1", "persistentvolumeclaims", True
    ),
    "deployments": Kind(Deployment, "/apis/apps/v1", "deployments", True),
    "statefulsets": Kind(StatefulSet, "/apis/apps/v1", "statefulsets", True),
    "daemonsets": Kind(DaemonSet, "/apis/apps/v1", "daemonsets", True),
    "horizontalpodautoscalers": Kind(
        HorizontalPodAutoscaler, "/apis/autoscaling/v2", "horizontalpodautoscalers", True
    ),
    "poddisruptionbudgets": Kind(
        PodDisruptionBudget, "/apis/policy/v1", "poddisruptionbudgets", True
    ),
    "longhorn-settings": Kind(LonghornSetting, "/apis/longhorn.io/v1beta2", "settings", True),
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
    for name, kind in KINDS.items():
        if kinds is not None and name not in kinds:
            continue
        try:
            snap.items[name] = _list(cluster, kind, namespace)
        except KubeNotFoundError:
            snap.missing[name] = "not served by this cluster"
        except KubeApiError as exc:
            if exc.status in (401, 403):
                snap.missing[name] = refused(exc)
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
        snap.missing["endpoints"] = refused(exc) if exc.status in (401, 403) else exc.message
    snap.requests = counter()
    return snap


REFUSED = ("forbidden", "unauthorized")
"""How a read the API server refused starts: by RBAC (403), or the credentials (401)."""


def refused(exc: KubeApiError) -> str:
    if exc.status == 401:
        return f"unauthorized (401): the API server did not accept the credentials ({exc.message})"
    return f"forbidden: {exc.message}"


def _list(cluster: Cluster, kind: Kind, namespace: str | None) -> list[Any]:
    """Every item of ``kind``, page by page, each pruned to what the checks read, as models."""
    scope = f"/namespaces/{namespace}" if kind.namespaced and namespace else ""
    path = f"{kind.api}{scope}/{kind.plural}"
    http = http_client(cluster.client)
    out: list[Any] = []
    token: str | None = None
    while True:
        params = {"limit": str(PAGE), **({"continue": token} if token else {})}
        if kind.fields:
            params["fieldSelector"] = kind.fields
        with cluster._guard():
            response = http.get(path, params=params)
            if response.status_code >= 400:
                raise _status_error(response.status_code, response.reason_phrase, response.text)
            page = msgspec.json.decode(response.content)
        out.extend(kind.resource.from_dict(prune(kind.plural, item)) for item in page["items"])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return out


def _status_error(code: int, phrase: str, body: str) -> KubeApiError:
    """The API server's own words from its Status body (``forbidden: User … cannot list …``)."""
    try:
        message = str(json.loads(body).get("message") or phrase)
    except (ValueError, AttributeError):  # not a Status object
        message = phrase
    error = KubeNotFoundError if code == 404 else KubeApiError
    return error(f"Kubernetes API: {message}", status=code, reason=phrase)


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_CONTAINER_KEEP = ("name", "image", "command", "args")
_POD_SPEC_KEEP = ("nodeName", "containers", "initContainers", "volumes")
_POD_STATUS_KEEP = ("phase", "startTime", "containerStatuses", "initContainerStatuses")
_CONTAINER_STATUS_KEEP = ("name", "ready", "restartCount", "state", "lastState", "image", "imageID")


def prune(plural: str, item: dict[str, Any]) -> dict[str, Any]:
    """Keep what the checks read; drop what weighs most: managed fields, kubectl's last-applied
    copy, a Node's image list, a pod's conditions and scheduling details, containers beyond
    name, image, command and args, volume sources other than a claim. A pod parses in a third
    of the time and holds a quarter of the memory; the checks see the same answers."""
    meta = item.get("metadata") or {}
    meta.pop("managedFields", None)
    (meta.get("annotations") or {}).pop(LAST_APPLIED, None)
    if plural == "nodes":
        (item.get("status") or {}).pop("images", None)
    elif plural == "pods":
        spec = _keep(item.get("spec") or {}, _POD_SPEC_KEEP)
        _prune_pod_spec(spec)
        status = _keep(item.get("status") or {}, _POD_STATUS_KEEP)
        for key in ("containerStatuses", "initContainerStatuses"):
            if key in status:
                status[key] = [_keep(c, _CONTAINER_STATUS_KEEP) for c in status[key]]
        item["spec"], item["status"] = spec, status
    elif plural in ("deployments", "statefulsets", "daemonsets"):
        template = (item.get("spec") or {}).get("template") or {}
        _prune_pod_spec(template.get("spec") or {})
    return item


def _keep(mapping: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: mapping[k] for k in keys if k in mapping}


def _prune_pod_spec(spec: dict[str, Any]) -> None:
    for key in ("containers", "initContainers"):
        if key in spec:
            spec[key] = [_keep(c, _CONTAINER_KEEP) for c in spec[key]]
    spec.pop("ephemeralContainers", None)
    if "volumes" in spec:
        spec["volumes"] = [_keep(v, ("name", "persistentVolumeClaim")) for v in spec["volumes"]]


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
