"""The cluster operations remediation needs, each one API call with translated errors."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import lightkube
import stamina
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.core_v1 import (
    EndpointAddress,
    EndpointPort,
    EndpointSubset,
    EventSource,
    ObjectReference,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import DaemonSet, Deployment, ReplicaSet, StatefulSet
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import (
    Endpoints,
    Event,
    Namespace,
    Node,
    PersistentVolumeClaim,
    Pod,
    Secret,
)
from lightkube.resources.storage_v1 import VolumeAttachment

from fireproof.errors import NotFoundError, UsageError
from fireproof.kube.client import (
    KubeApiError,
    KubeConflictError,
    KubeNotFoundError,
    load_kubeconfig,
    sync_client,
    translate_errors,
)
from fireproof.kube.transport import http_client

COMPONENT = "fireproof"
NODE_LEASE_NAMESPACE = "kube-node-lease"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _node_changed_retries() -> Any:
    """Read-modify-write of a Node that another writer changed in between: read again and
    redo. A Node that has just become Ready changes several times a second (its status, the
    node lifecycle controller lifting its taints), so one stale read is common, not an error."""
    return stamina.retry_context(
        on=KubeConflictError, attempts=6, timeout=10, wait_initial=0.02, wait_max=0.5
    )


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready_condition(node: Node) -> Any:
    for cond in (node.status.conditions if node.status else None) or []:
        if cond.type == "Ready":
            return cond
    return None


def node_ready(node: Node) -> str:
    """The Ready condition's status: True, False or Unknown."""
    cond = _ready_condition(node)
    return str(cond.status) if cond is not None else "Unknown"


def ready_since(node: Node) -> dt.datetime | None:
    """When the Ready condition last changed (its lastTransitionTime)."""
    cond = _ready_condition(node)
    return cond.lastTransitionTime if cond is not None else None


def system_uuid(node: Node) -> str | None:
    """The machine's SMBIOS UUID as the kubelet reports it (``status.nodeInfo.systemUUID``)."""
    info = node.status.nodeInfo if node.status else None
    return str(info.systemUUID) if info and info.systemUUID else None


def internal_ip(node: Node) -> str | None:
    for address in (node.status.addresses if node.status else None) or []:
        if address.type == "InternalIP":
            return str(address.address)
    return None


def pod_running_ready(pod: Pod) -> bool:
    """Running, Ready and not being deleted: a pod that serves."""
    status = pod.status
    if status is None or status.phase != "Running" or pod.metadata is None:
        return False
    if pod.metadata.deletionTimestamp is not None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])


def lease_fresh(lease: Lease | None, now: float, default_duration: float) -> bool:
    """Whether the Lease was renewed within its duration (``default_duration`` when it names
    none): its holder still holds it."""
    spec = lease.spec if lease is not None else None
    if spec is None or spec.renewTime is None:
        return False
    duration = spec.leaseDurationSeconds or default_duration
    return bool(spec.renewTime.timestamp() + duration >= now)


def new_lease(namespace: str, name: str, holder: str, duration: float, at: dt.datetime) -> Lease:
    """A Lease held by ``holder`` from ``at`` (the first one: no transitions yet)."""
    return Lease(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=LeaseSpec(
            holderIdentity=holder,
            leaseDurationSeconds=int(duration),
            acquireTime=at,
            renewTime=at,
            leaseTransitions=0,
        ),
    )


def lease_spec(lease: Lease) -> LeaseSpec:
    """The Lease's spec, made empty first when the object has none."""
    if lease.spec is None:
        lease.spec = LeaseSpec()
    return lease.spec


def is_control_plane(node: Node) -> bool:
    labels = (node.metadata.labels if node.metadata else None) or {}
    return "node-role.kubernetes.io/control-plane" in labels


class Cluster:
    """A connected cluster: thin, typed wrappers over the calls fireproof makes."""

    def __init__(self, client: lightkube.Client, server: str) -> None:
        self.client = client
        self.server = server

    @classmethod
    def connect(cls, kubeconfig: Any = None, context: str | None = None) -> Cluster:
        config = load_kubeconfig(kubeconfig, context)
        return cls(sync_client(config, timeout=15.0), str(config.cluster.server))

    def close(self) -> None:
        """Close the connections (a long-lived process or a test that connects more than once)."""
        http_client(self.client).close()

    def _guard(self) -> Any:
        return translate_errors(f"the API server {self.server}")

    # -- reads --------------------------------------------------------------------------------

    def server_version(self) -> tuple[int, int]:
        # lightkube has no call for /version; its authenticated HTTP client answers it.
        transport = http_client(self.client)
        with self._guard():
            response = transport.get("/version")
            response.raise_for_status()
            info = response.json()
        major = int(str(info["major"]).rstrip("+"))
        minor = int(str(info["minor"]).rstrip("+"))
        return major, minor

    def node(self, name: str) -> Node:
        try:
            with self._guard():
                return self.client.get(Node, name)
        except KubeNotFoundError:
            raise NotFoundError(f"unknown node {name}", hint="see `kubectl get nodes`") from None

    def annotation(self, node: str, key: str) -> tuple[str | None, str | None]:
        """One annotation of the Node as read now, with the resourceVersion it was read at
        (for a conditional write after it)."""
        meta = self.node(node).metadata
        annotations = (meta.annotations if meta else None) or {}
        return annotations.get(key), meta.resourceVersion if meta else None

    def nodes(self) -> list[Node]:
        with self._guard():
            return list(self.client.list(Node))

    def pods_on(self, node: str) -> list[Pod]:
        with self._guard():
            return list(
                self.client.list(Pod, namespace=lightkube.ALL_NS, fields={"spec.nodeName": node})
            )

    def pods(self, namespace: str = "*") -> list[Pod]:
        ns = lightkube.ALL_NS if namespace == "*" else namespace
        with self._guard():
            return list(self.client.list(Pod, namespace=ns))

    def workload_pods(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        """The pods a workload's matchLabels select (server-side label selection)."""
        labels: dict[str, Any] = dict(selector)
        with self._guard():
            return list(self.client.list(Pod, namespace=namespace, labels=labels))

    def namespace_exists(self, name: str) -> bool | None:
        """Whether the namespace exists; None when this identity may not read namespaces."""
        try:
            with self._guard():
                self.client.get(Namespace, name)
        except KubeNotFoundError:
            return False
        except KubeApiError as exc:
            if exc.status in (401, 403):
                return None
            raise
        return True

    def _workload(self, namespace: str, kind: str, name: str) -> tuple[Any, Any]:
        """The resource class and the object of a Deployment, StatefulSet or DaemonSet
        (UsageError for another kind, NotFoundError if it does not exist)."""
        resources: dict[str, Any] = {
            "deployment": Deployment,
            "statefulset": StatefulSet,
            "daemonset": DaemonSet,
        }
        resource = resources.get(kind.lower())
        if resource is None:
            raise UsageError(f"unknown workload kind {kind!r} (known: {', '.join(resources)})")
        try:
            with self._guard():
                return resource, self.client.get(resource, name, namespace=namespace)
        except KubeNotFoundError:
            raise NotFoundError(f"{kind.lower()} {namespace}/{name} not found") from None

    def workload_selector(self, namespace: str, kind: str, name: str) -> dict[str, str]:
        """The matchLabels of a Deployment, StatefulSet or DaemonSet (NotFoundError if none)."""
        _resource, workload = self._workload(namespace, kind, name)
        selector = workload.spec.selector if workload.spec else None
        return dict(selector.matchLabels or {}) if selector is not None else {}

    def workload_readiness(self, namespace: str, kind: str, name: str) -> tuple[int, int]:
        """(ready, wanted) replicas of a Deployment or StatefulSet, or a DaemonSet's ready and
        desired pods (NotFoundError if it does not exist)."""
        resource, workload = self._workload(namespace, kind, name)
        status = workload.status
        if resource is DaemonSet:
            return (
                (status.numberReady or 0, status.desiredNumberScheduled or 0) if status else (0, 0)
            )
        wanted = (
            workload.spec.replicas if workload.spec and workload.spec.replicas is not None else 1
        )
        return (status.readyReplicas or 0) if status else 0, wanted

    def replicaset_replicas(self, namespace: str, name: str) -> int | None:
        try:
            with self._guard():
                rs = self.client.get(ReplicaSet, name, namespace=namespace)
        except KubeNotFoundError:
            return None
        return rs.spec.replicas if rs.spec else None

    def node_lease_renewals(self) -> dict[str, dt.datetime | None]:
        """When each kubelet last renewed its Lease in ``kube-node-lease`` (by node name)."""
        with self._guard():
            leases = list(self.client.list(Lease, namespace=NODE_LEASE_NAMESPACE))
        return {
            lease.metadata.name: (lease.spec.renewTime if lease.spec else None)
            for lease in leases
            if lease.metadata and lease.metadata.name
        }

    def lease(self, namespace: str, name: str) -> Lease | None:
        try:
            with self._guard():
                return self.client.get(Lease, name, namespace=namespace)
        except KubeNotFoundError:
            return None

    def create_lease(self, lease: Lease) -> Lease:
        """Create; a Lease that already exists raises KubeConflictError."""
        with self._guard():
            return self.client.create(lease)

    def annotate_lease(self, namespace: str, name: str, key: str, value: str | None) -> None:
        """Set (or with None remove) one annotation of a Lease (a merge patch)."""
        patch = {"metadata": {"annotations": {key: value}}}
        with self._guard():
            self.client.patch(Lease, name, patch, namespace=namespace)

    def replace_lease(self, lease: Lease) -> Lease:
        """Replace, only if unchanged since read (its resourceVersion): else KubeConflictError."""
        with self._guard():
            return self.client.replace(lease)

    def volume_attachments(self) -> list[VolumeAttachment]:
        with self._guard():
            return list(self.client.list(VolumeAttachment))

    def endpoints_addresses(self) -> list[str]:
        with self._guard():
            ep = self.client.get(Endpoints, "kubernetes", namespace="default")
        return [a.ip for s in (ep.subsets or []) for a in (s.addresses or [])]

    def read_secret(self, namespace: str, name: str, key: str) -> str:
        try:
            with self._guard():
                secret = self.client.get(Secret, name, namespace=namespace)
        except KubeNotFoundError:
            raise UsageError(f"Kubernetes Secret {namespace}/{name} does not exist") from None
        data = secret.data or {}
        if key not in data:
            raise UsageError(f"Kubernetes Secret {namespace}/{name} has no key {key!r}")
        try:
            # Unstripped: the secret source strips one newline and refuses the rest.
            return base64.b64decode(data[key]).decode()
        except (ValueError, UnicodeDecodeError):
            raise UsageError(
                f"Kubernetes Secret {namespace}/{name} key {key!r} is not UTF-8 text"
            ) from None

    # -- writes -------------------------------------------------------------------------------

    def cordon(self, node: str, mark: str) -> None:
        """Cordon and leave ``mark`` (an annotation) saying fireproof did, in one write."""
        patch = {
            "metadata": {"annotations": {mark: now_rfc3339()}},
            "spec": {"unschedulable": True},
        }
        with self._guard():
            self.client.patch(Node, node, patch)

    def uncordon_if_marked(self, node: str, mark: str) -> bool:
        """Uncordon only a node fireproof cordoned (it carries ``mark``); an admin's cordon
        stays. Returns whether the node was uncordoned."""
        current = self.node(node)
        annotations = (current.metadata.annotations if current.metadata else None) or {}
        if mark not in annotations:
            return False
        patch = {"metadata": {"annotations": {mark: None}}, "spec": {"unschedulable": None}}
        with self._guard():
            self.client.patch(Node, node, patch)
        return True

    def set_annotation(
        self, node: str, key: str, value: str | None, *, version: str | None
    ) -> Node:
        """Set (or with None remove) one annotation; with ``version`` only if the Node has not
        changed since it was read (a conditional write: a stale writer gets a conflict)."""
        patch: dict[str, Any] = {"metadata": {"annotations": {key: value}}}
        if version is not None:
            patch["metadata"]["resourceVersion"] = version
        with self._guard():
            result: Node = self.client.patch(Node, node, patch)
        return result

    def set_labels(self, node: str, labels: dict[str, str], annotations: dict[str, str]) -> Node:
        """Merge ``labels`` and ``annotations`` into the Node's (one patch)."""
        patch = {"metadata": {"labels": labels, "annotations": annotations}}
        with self._guard():
            result: Node = self.client.patch(Node, node, patch)
        return result

    def add_taint(
        self,
        node: str,
        key: str,
        value: str,
        effect: str,
        *,
        before_write: Callable[[], None] | None = None,
    ) -> bool:
        """Add the taint unless present; returns whether it was added. ``before_write`` runs
        right before every write, a retry's too (a release checks its machine is still off)."""
        for attempt in _node_changed_retries():
            with attempt:
                current = self.node(node)
                spec_taints = (current.spec.taints if current.spec else None) or []
                taints = [t.to_dict() for t in spec_taints]
                if any(t["key"] == key and t["effect"] == effect for t in taints):
                    return False
                taints.append(
                    {"key": key, "value": value, "effect": effect, "timeAdded": now_rfc3339()}
                )
                if before_write is not None:
                    before_write()
                self._replace_taints(current, taints)
        return True

    def remove_taint(self, node: str, key: str) -> bool:
        """Remove every taint with ``key``; returns whether one was there."""
        for attempt in _node_changed_retries():
            with attempt:
                current = self.node(node)
                spec_taints = (current.spec.taints if current.spec else None) or []
                taints = [t.to_dict() for t in spec_taints]
                kept = [t for t in taints if t["key"] != key]
                if len(kept) == len(taints):
                    return False
                self._replace_taints(current, kept)
        return True

    def _version(self, node: str) -> str | None:
        meta = self.node(node).metadata
        return meta.resourceVersion if meta else None

    def _replace_taints(self, node: Node, taints: list[dict[str, Any]]) -> None:
        # A JSON patch guarded by resourceVersion: taints of other writers are never lost.
        version = node.metadata.resourceVersion if node.metadata else None
        name = (node.metadata.name if node.metadata else None) or ""
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/spec/taints", "value": taints},
        ]
        # lightkube's stubs type a JSON patch body as a mapping; the server takes the list.
        client: Any = self.client
        try:
            with self._guard():
                client.patch(Node, name, ops, patch_type=lightkube.types.PatchType.JSON)
        except KubeApiError as exc:
            # The API server answers a failed `test` with a bare 422 Invalid (no cause), not
            # 409: a Node read again at another resourceVersion is what tells it apart.
            if exc.status == 422 and self._version(name) != version:
                raise KubeConflictError(
                    f"node {name} changed while its taints were written",
                    status=409,
                    reason="Conflict",
                ) from None
            raise

    def force_delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        """Delete the pod with this UID at once (grace period 0). False when it is gone already
        or the name now belongs to another pod: a StatefulSet recreates a pod under the same name
        as soon as the old one goes, and that replacement must not be deleted in its place."""
        # lightkube's delete sends no body, and preconditions exist only in the body's
        # DeleteOptions; its authenticated HTTP client sends one.
        transport = http_client(self.client)
        options: dict[str, Any] = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
        }
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            with self._guard():
                response = transport.request(
                    "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", json=options
                )
                response.raise_for_status()
        except KubeApiError as exc:
            if exc.status in (404, 409):  # gone, or the UID precondition failed
                return False
            raise
        return True

    def delete_volume_attachment(self, name: str) -> bool:
        try:
            with self._guard():
                self.client.delete(VolumeAttachment, name)
        except KubeNotFoundError:
            return False
        return True

    def set_endpoints(self, addresses: list[str], port: int) -> None:
        endpoints = Endpoints(
            metadata=ObjectMeta(name="kubernetes", namespace="default"),
            subsets=[
                EndpointSubset(
                    addresses=[EndpointAddress(ip=a) for a in addresses],
                    ports=[EndpointPort(name="https", port=port, protocol="TCP")],
                )
            ],
        )
        with self._guard():
            self.client.apply(endpoints, field_manager=COMPONENT, force=True)

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> int:
        """Set a Deployment's or StatefulSet's replicas; returns the count it had."""
        resource, current = self._workload(namespace, kind, name)
        before = current.spec.replicas if current.spec and current.spec.replicas else 0
        with self._guard():
            self.client.patch(resource, name, {"spec": {"replicas": replicas}}, namespace=namespace)
        return int(before)

    def single_node_claims(self, kind: str, namespace: str, name: str) -> list[str]:
        """The claims of a workload's pod template that only one node may mount (RWO)."""
        _resource, workload = self._workload(namespace, kind, name)
        spec = workload.spec.template.spec if workload.spec and workload.spec.template else None
        claims = [
            v.persistentVolumeClaim.claimName
            for v in ((spec.volumes if spec else None) or [])
            if v.persistentVolumeClaim
        ]
        out = []
        for claim in claims:
            try:
                with self._guard():
                    pvc = self.client.get(PersistentVolumeClaim, claim, namespace=namespace)
            except KubeNotFoundError:
                continue
            modes = (pvc.spec.accessModes if pvc.spec else None) or []
            if "ReadWriteOnce" in modes or "ReadWriteOncePod" in modes:
                out.append(claim)
        return out

    def restart(self, kind: str, namespace: str, name: str) -> bool:
        """``kubectl rollout restart``: a new template annotation; False if absent."""
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now_rfc3339()}}}}}
        try:
            with self._guard():
                if kind == "DaemonSet":
                    self.client.patch(DaemonSet, name, patch, namespace=namespace)
                else:
                    self.client.patch(Deployment, name, patch, namespace=namespace)
        except KubeNotFoundError:
            return False
        return True

    def record_event(
        self,
        name: str,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        kind: str = "Node",
        namespace: str | None = None,
    ) -> None:
        """An Event on the object (a Node by default), so `kubectl describe` shows what
        fireproof did."""
        stamp = dt.datetime.now(dt.UTC)
        event = Event(
            metadata=ObjectMeta(
                name=f"{name}.fp-{uuid.uuid4().hex[:12]}", namespace=namespace or "default"
            ),
            # Nodes are referred to by name as UID, as the kubelet does; `describe` matches it.
            involvedObject=ObjectReference(
                kind=kind,
                apiVersion="v1",
                name=name,
                namespace=namespace,
                uid=name if kind == "Node" else None,
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=EventSource(component=COMPONENT),
            reportingComponent=COMPONENT,
            reportingInstance=COMPONENT,
            firstTimestamp=stamp,
            lastTimestamp=stamp,
            count=1,
        )
        with self._guard():
            self.client.create(event)
