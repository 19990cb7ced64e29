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

from fireproof.errors import FireproofError
from fireproof.kube import shapes
from fireproof.kube.client import KubeApiError, KubeNotFoundError
from fireproof.kube.cluster import Cluster
from fireproof.kube.transport import http_client

PAGE = 500
"""Items per list request (``limit``/``continue``): a page is decoded into compact shapes and
its bytes dropped before the next, so memory follows the result, not the cluster's raw size."""


@dataclass(frozen=True, slots=True)
class Kind:
    shape: type[Any]
    """What an item is decoded into (:mod:`fireproof.kube.shapes`): only what the checks read."""
    api: str
    """``/api/v1`` or ``/apis/GROUP/VERSION``."""
    plural: str
    namespaced: bool
    fields: str | None = None
    """A field selector the API server applies: only what the checks read is sent."""


# kind -> how to list it
KINDS: dict[str, Kind] = {
    "nodes": Kind(shapes.Node, "/api/v1", "nodes", False),
    "pods": Kind(shapes.Pod, "/api/v1", "pods", True),
    # Only FP-N3 reads events, and only the attach/detach controller's refusals: a busy
    # cluster has tens of thousands of other events.
    "events": Kind(shapes.Event, "/api/v1", "events", True, fields="reason=FailedAttachVolume"),
    "volumeattachments": Kind(
        shapes.VolumeAttachment, "/apis/storage.k8s.io/v1", "volumeattachments", False
    ),
    "persistentvolumes": Kind(shapes.PersistentVolume, "/api/v1", "persistentvolumes", False),
    "persistentvolumeclaims": Kind(
        shapes.PersistentVolumeClaim, "/api/v1", "persistentvolumeclaims", True
    ),
    "deployments": Kind(shapes.Workload, "/apis/apps/v1", "deployments", True),
    "statefulsets": Kind(shapes.Workload, "/apis/apps/v1", "statefulsets", True),
    "daemonsets": Kind(shapes.Workload, "/apis/apps/v1", "daemonsets", True),
    "horizontalpodautoscalers": Kind(
        shapes.HorizontalPodAutoscaler, "/apis/autoscaling/v2", "horizontalpodautoscalers", True
    ),
    "poddisruptionbudgets": Kind(
        shapes.PodDisruptionBudget, "/apis/policy/v1", "poddisruptionbudgets", True
    ),
    "longhorn-settings": Kind(
        shapes.LonghornSetting, "/apis/longhorn.io/v1beta2", "settings", True
    ),
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
        ep = _get(cluster, "/api/v1/namespaces/default/endpoints/kubernetes", {}, shapes.Endpoints)
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
    """Every item of ``kind``, page by page, decoded into its compact shape."""
    scope = f"/namespaces/{namespace}" if kind.namespaced and namespace else ""
    path = f"{kind.api}{scope}/{kind.plural}"
    page_type = shapes.Page[kind.shape]  # type: ignore[name-defined]
    out: list[Any] = []
    token: str | None = None
    while True:
        params = {"limit": str(PAGE), **({"continue": token} if token else {})}
        if kind.fields:
            params["fieldSelector"] = kind.fields
        page = _get(cluster, path, params, page_type)
        out.extend(page.items)
        token = page.metadata.next
        if not token:
            return out


def _get(cluster: Cluster, path: str, params: dict[str, str], shape: Any) -> Any:
    with cluster._guard():
        response = http_client(cluster.client).get(path, params=params)
        if response.status_code >= 400:
            raise _status_error(response.status_code, response.reason_phrase, response.text)
        try:
            return msgspec.json.decode(response.content, type=shape)
        except msgspec.ValidationError as exc:
            # An object this cluster serves in an unexpected form: say which list, not a trace.
            raise FireproofError(f"Kubernetes API: unexpected {path} response: {exc}") from None


def _status_error(code: int, phrase: str, body: str) -> KubeApiError:
    """The API server's own words from its Status body (``forbidden: User … cannot list …``)."""
    try:
        message = str(json.loads(body).get("message") or phrase)
    except (ValueError, AttributeError):  # not a Status object
        message = phrase
    error = KubeNotFoundError if code == 404 else KubeApiError
    return error(f"Kubernetes API: {message}", status=code, reason=phrase)


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
