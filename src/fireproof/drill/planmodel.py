"""What a drill's plan is made of: its targets, the plan itself, and the checks every kind of
fault shares (a refusal naming the spec's line, whether a guard runs, the run's environment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fireproof.clock import Clock, utc_now
from fireproof.drill.spec import DrillSpec, ProxmoxFaultSpec, SpecError, TargetSpec, WorkloadRef
from fireproof.errors import PermanentError
from fireproof.fencing import Fencer, Machine
from fireproof.kube import lease_fresh
from fireproof.wiring import Target


class DrillRefused(PermanentError):
    """The drill will not start: the reason is the message. Nothing was touched."""


class LabHooks(Protocol):
    """What only the lab can do (a network partition, emulator faults): given by the CLI."""

    profile: str

    def partition(self, node: str, cut: bool) -> None: ...

    def add_proxmox_fault(self, fault: ProxmoxFaultSpec, machine: Machine) -> None: ...

    def clear_proxmox_faults(self) -> None: ...

    def host_hang(self, host: str) -> None: ...

    def change_ip(self, node: str, address: str) -> None:
        """Give the node's VM a new address; the ``kubernetes`` Endpoints are left as they are."""
        ...

    def host_restore(self, host: str) -> None:
        """Power the host back (a power cycle if it still hangs)."""
        ...


@dataclass(frozen=True, slots=True)
class NodeTarget:
    node: str
    machine: Machine
    fencer: Fencer = field(repr=False, compare=False)
    why: str
    """How the spec named it: ``node`` or the workload it runs."""
    identity: str


@dataclass(frozen=True, slots=True)
class HostTarget:
    host: str
    machine: Machine | None
    """The host's own device (``hosts:``); None for a hang, which only the lab can cause."""
    fencer: Fencer | None = field(repr=False, compare=False)
    why: str


@dataclass
class DrillPlan:
    spec: DrillSpec
    nodes: list[NodeTarget]
    workloads: dict[str, tuple[Any, dict[str, str]]]
    """label -> (WorkloadRef, pod selector)."""
    environment: dict[str, Any]
    steps: list[str]
    hosts: list[HostTarget] = field(default_factory=list)
    """For host faults: the hosts taken down (``nodes`` are every node on them)."""
    scale: ScaleTarget | None = None
    """For ``fault: scale``: the workload, its replicas before, the count it is scaled to."""
    wanted: dict[str, int] = field(default_factory=dict)
    """label -> the Ready replicas that make each workload whole (``ready_within``)."""
    address: AddressChange | None = None
    """For ``fault: change-ip``: the node, its address before and after."""
    pause_guard: bool = False
    """A guard runs and the recovery is not guard: it is paused for the drill."""


@dataclass(frozen=True, slots=True)
class AddressChange:
    moves: tuple[tuple[str, str, str], ...]
    """(node, old address, new address) of each control-plane node that changes."""
    endpoints_before: tuple[str, ...] = ()
    """The ``kubernetes`` Endpoints' addresses before the drill: what the restore puts back."""

    @property
    def retired(self) -> frozenset[str]:
        return frozenset(old for _node, old, _new in self.moves)


@dataclass(frozen=True, slots=True)
class ScaleTarget:
    ref: WorkloadRef
    before: int
    to: int
    single_node_claims: tuple[str, ...]
    """Its ReadWriteOnce claims: more than one replica cannot all mount them (FP-R3/R4)."""


class Unsteady(DrillRefused):
    """Refused only because the cluster is not in its steady state yet (a replacement still
    starting, a node still booting): waiting may help, unlike any other refusal."""


def refuse(target: TargetSpec, why: str, hint: str | None = None) -> SpecError:
    return SpecError(f"{target.where}: {target.label}: {why}", hint=hint)


def node_of(target: TargetSpec, pods: list[Any]) -> str:
    ref = target.running
    assert ref is not None  # noqa: S101 - a target has a node or a workload
    for pod in pods:
        if (
            pod.status is not None
            and pod.status.phase == "Running"
            and not pod.metadata.deletionTimestamp
            and pod.spec is not None
            and pod.spec.nodeName
        ):
            return str(pod.spec.nodeName)
    raise Unsteady(f"{target.where}: {target.label}: no Running pod of {ref.label}")


GUARD_PAUSE = "fireproof.io/pause"
"""The annotation guard reads on its Lease (fireproof.guard.record.PAUSE_ANNOTATION)."""


def guard_running(target: Target, clock: Clock) -> bool:
    """A guard holds its Lease (the one fireproof.yaml names) and renews it."""
    settings = target.config.guard
    lease = target.cluster.lease(settings.lease_namespace, settings.lease_name)
    holder = lease.spec.holderIdentity if lease is not None and lease.spec else None
    return bool(holder) and lease_fresh(lease, clock.time(), settings.lease_duration_seconds)


def check_guard(target: Target, clock: Clock) -> None:
    settings = target.config.guard
    if not guard_running(target, clock):
        raise DrillRefused(
            f"recovery: guard, but no guard holds the Lease "
            f"{settings.lease_namespace}/{settings.lease_name}",
            hint="start one (`fireproof guard run`), or use recovery: heal or none",
        )


def environment_of(
    target: Target, lab: LabHooks | None, clock: Clock, nodes: int
) -> dict[str, Any]:
    """Where the drill ran: recorded in the run document."""
    major, minor = target.cluster.server_version()
    return {
        "kubernetes": f"{major}.{minor}",
        "server": target.cluster.server,
        "lab": lab is not None,
        "profile": lab.profile if lab is not None else None,
        "nodes": nodes,
        "started": utc_now(clock).isoformat(timespec="seconds"),
    }
