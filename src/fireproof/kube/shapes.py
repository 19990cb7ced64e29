"""The parts of Kubernetes objects that fireproof's read-only scans use, as compact structs.

A list response is decoded straight into these (msgspec, typed): fields not named here are
skipped by the decoder without being built, so a Node's image list, a pod's managed fields or
kubectl's last-applied copy cost parse time only, never memory. Attribute names follow the API
(camelCase) so code reads ``pod.spec.nodeName`` as it would on a full model.

Add a field here before a check reads it: a check that reads a field absent here fails with
AttributeError in the tests that run every check against the lab.
"""

from __future__ import annotations

import datetime as dt
from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")


class OwnerReference(msgspec.Struct, frozen=True):
    kind: str = ""
    name: str = ""
    controller: bool | None = None


class ObjectMeta(msgspec.Struct, frozen=True):
    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    creationTimestamp: dt.datetime | None = None
    deletionTimestamp: dt.datetime | None = None
    deletionGracePeriodSeconds: int | None = None
    ownerReferences: list[OwnerReference] | None = None


class ListMeta(msgspec.Struct, frozen=True):
    # "continue" is a Python keyword: the struct field is renamed, the JSON key is not.
    next: str | None = msgspec.field(default=None, name="continue")


class Page(msgspec.Struct, Generic[T], frozen=True):
    items: list[T] = []
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)


# --- Node


class Taint(msgspec.Struct, frozen=True):
    key: str = ""
    effect: str | None = None
    value: str | None = None


class NodeSpec(msgspec.Struct, frozen=True):
    taints: list[Taint] | None = None


class NodeCondition(msgspec.Struct, frozen=True):
    type: str = ""
    status: str = "Unknown"
    lastTransitionTime: dt.datetime | None = None


class NodeAddress(msgspec.Struct, frozen=True):
    type: str = ""
    address: str = ""


class NodeSystemInfo(msgspec.Struct, frozen=True):
    systemUUID: str | None = None


class NodeStatus(msgspec.Struct, frozen=True):
    conditions: list[NodeCondition] | None = None
    addresses: list[NodeAddress] | None = None
    nodeInfo: NodeSystemInfo | None = None


class Node(msgspec.Struct, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: NodeSpec | None = None
    status: NodeStatus | None = None


# --- Pod and pod templates


class Container(msgspec.Struct, frozen=True):
    name: str = ""
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None


class ClaimSource(msgspec.Struct, frozen=True):
    claimName: str = ""


class Volume(msgspec.Struct, frozen=True):
    name: str = ""
    persistentVolumeClaim: ClaimSource | None = None


class Toleration(msgspec.Struct, frozen=True):
    key: str | None = None
    operator: str | None = None
    effect: str | None = None


class AffinityTerm(msgspec.Struct, frozen=True):
    topologyKey: str = ""


class WeightedTerm(msgspec.Struct, frozen=True):
    weight: int = 0
    podAffinityTerm: AffinityTerm = AffinityTerm()


class PodAntiAffinity(msgspec.Struct, frozen=True):
    requiredDuringSchedulingIgnoredDuringExecution: list[AffinityTerm] | None = None
    preferredDuringSchedulingIgnoredDuringExecution: list[WeightedTerm] | None = None


class Affinity(msgspec.Struct, frozen=True):
    podAntiAffinity: PodAntiAffinity | None = None


class SpreadConstraint(msgspec.Struct, frozen=True):
    topologyKey: str = ""
    maxSkew: int = 1


class PodSpec(msgspec.Struct, frozen=True):
    nodeName: str | None = None
    containers: list[Container] = []
    initContainers: list[Container] | None = None
    volumes: list[Volume] | None = None
    tolerations: list[Toleration] | None = None
    affinity: Affinity | None = None
    topologySpreadConstraints: list[SpreadConstraint] | None = None


class StateWaiting(msgspec.Struct, frozen=True):
    reason: str | None = None
    message: str | None = None


class StateTerminated(msgspec.Struct, frozen=True):
    exitCode: int = 0
    reason: str | None = None
    message: str | None = None


class StateRunning(msgspec.Struct, frozen=True):
    startedAt: dt.datetime | None = None


class ContainerState(msgspec.Struct, frozen=True):
    waiting: StateWaiting | None = None
    running: StateRunning | None = None
    terminated: StateTerminated | None = None


class ContainerStatus(msgspec.Struct, frozen=True):
    name: str = ""
    ready: bool = False
    restartCount: int = 0
    state: ContainerState | None = None
    lastState: ContainerState | None = None


class PodStatus(msgspec.Struct, frozen=True):
    phase: str | None = None
    startTime: dt.datetime | None = None
    containerStatuses: list[ContainerStatus] | None = None
    initContainerStatuses: list[ContainerStatus] | None = None


class Pod(msgspec.Struct, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec | None = None
    status: PodStatus | None = None


class PodTemplate(msgspec.Struct, frozen=True):
    metadata: ObjectMeta | None = None
    spec: PodSpec | None = None


class WorkloadSpec(msgspec.Struct, frozen=True):
    replicas: int | None = None
    template: PodTemplate = PodTemplate()


class Workload(msgspec.Struct, frozen=True):
    """A Deployment, StatefulSet or DaemonSet: what the checks read is the same."""

    metadata: ObjectMeta = ObjectMeta()
    spec: WorkloadSpec = WorkloadSpec()


# --- Storage


class AttachmentSource(msgspec.Struct, frozen=True):
    persistentVolumeName: str | None = None


class AttachmentSpec(msgspec.Struct, frozen=True):
    attacher: str = ""
    nodeName: str = ""
    source: AttachmentSource = AttachmentSource()


class AttachmentStatus(msgspec.Struct, frozen=True):
    attached: bool = False


class VolumeAttachment(msgspec.Struct, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: AttachmentSpec = AttachmentSpec()
    status: AttachmentStatus | None = None


class ClaimRef(msgspec.Struct, frozen=True):
    namespace: str | None = None
    name: str | None = None


class PersistentVolumeSpec(msgspec.Struct, frozen=True):
    claimRef: ClaimRef | None = None


class PersistentVolume(msgspec.Struct, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: PersistentVolumeSpec | None = None


class ClaimSpec(msgspec.Struct, frozen=True):
    accessModes: list[str] | None = None


class PersistentVolumeClaim(msgspec.Struct, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: ClaimSpec | None = None


# --- Events, autoscalers, budgets, Longhorn settings


class ObjectReference(msgspec.Struct, frozen=True):
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None


class Event(msgspec.Struct, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    reason: str | None = None
    message: str | None = None
    involvedObject: ObjectReference = ObjectReference()


class ScaleTarget(msgspec.Struct, frozen=True):
    kind: str = ""
    name: str = ""


class AutoscalerSpec(msgspec.Struct, frozen=True):
    scaleTargetRef: ScaleTarget = ScaleTarget()


class HorizontalPodAutoscaler(msgspec.Struct, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: AutoscalerSpec | None = None


class LabelSelector(msgspec.Struct, frozen=True):
    matchLabels: dict[str, str] | None = None


class BudgetSpec(msgspec.Struct, frozen=True):
    selector: LabelSelector | None = None


class PodDisruptionBudget(msgspec.Struct, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: BudgetSpec | None = None


class LonghornSetting(msgspec.Struct, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    value: str | None = None


class EndpointAddress(msgspec.Struct, frozen=True):
    ip: str = ""


class EndpointSubset(msgspec.Struct, frozen=True):
    addresses: list[EndpointAddress] | None = None


class Endpoints(msgspec.Struct, frozen=True):
    subsets: list[EndpointSubset] | None = None
