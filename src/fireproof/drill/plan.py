"""A drill's plan: which nodes, which machines, which workloads, checked before anything is done.

Everything that can refuse a drill refuses here, before the fault: an unknown workload, a node
without a fencing device, a machine that is not the node's, a target whose loss would break
control-plane quorum, a lab-only fault on a real cluster, `recovery: guard` with no guard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fireproof.clock import SYSTEM_CLOCK, Clock, utc_now
from fireproof.drill.spec import (
    DrillSpec,
    Fault,
    ProxmoxFaultSpec,
    Recovery,
    SloKind,
    SpecError,
    TargetSpec,
    WorkloadRef,
)
from fireproof.errors import FireproofError, NotFoundError, PermanentError
from fireproof.fencing import Fencer, Machine
from fireproof.heal.node import prove_identity
from fireproof.kube import internal_ip, is_control_plane, lease_fresh, node_ready
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


def _refuse(target: TargetSpec, why: str, hint: str | None = None) -> SpecError:
    return SpecError(f"{target.where}: {target.label}: {why}", hint=hint)


def _node_of(target: TargetSpec, pods: list[Any]) -> str:
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


def plan_drill(
    target: Target, spec: DrillSpec, lab: LabHooks | None, clock: Clock = SYSTEM_CLOCK
) -> DrillPlan:
    """Everything checked, nothing touched. A drill whose recovery is not guard pauses a
    running guard for its duration: `recovery: none` means nothing recovers."""
    plan = _plan(target, spec, lab, clock)
    if spec.recovery is not Recovery.GUARD and guard_running(target, clock):
        settings = target.config.guard
        plan.pause_guard = True
        plan.steps.insert(
            -1 if spec.restore else len(plan.steps),
            f"pause the running guard for the drill ({GUARD_PAUSE} on its Lease "
            f"{settings.lease_namespace}/{settings.lease_name}), resume it after",
        )
    return plan


def _plan(target: Target, spec: DrillSpec, lab: LabHooks | None, clock: Clock) -> DrillPlan:
    cluster = target.cluster
    if spec.fault is Fault.PARTITION and lab is None:
        raise SpecError(
            f"{spec.path}: fault: partition works in the lab only (`--lab`), for now",
            hint="on a real cluster use power-off or reboot",
        )
    if spec.proxmox_fault is not None and lab is None:
        raise SpecError(f"{spec.path}: proxmox_fault: the emulator's faults exist in the lab only")
    workloads: dict[str, tuple[Any, dict[str, str]]] = {}
    for ref in spec.workloads:
        try:
            selector = cluster.workload_selector(ref.namespace, ref.kind, ref.name)
        except NotFoundError as exc:
            raise SpecError(f"{ref.where}: unknown workload: {exc.message}") from None
        if not selector:
            raise SpecError(f"{ref.where}: {ref.label} has no matchLabels selector to follow")
        workloads[ref.label] = (ref, selector)
    wanted = {
        slo.workload.label: cluster.workload_readiness(
            slo.workload.namespace, slo.workload.kind, slo.workload.name
        )[1]
        for slo in spec.slos
        if slo.kind is SloKind.READY and slo.workload is not None
    }
    if spec.fault is Fault.SCALE:
        return _plan_scale(target, spec, workloads, wanted, lab, clock)
    if spec.fault is Fault.CHANGE_IP:
        return _plan_change_ip(target, spec, workloads, wanted, lab, clock)
    names: dict[str, TargetSpec] = {}
    hosts: list[HostTarget] = []
    if spec.fault.on_host:
        names, hosts = _host_targets(target, spec, lab, workloads)
    for item in spec.targets if not spec.fault.on_host else ():
        if item.node is not None:
            try:
                cluster.node(item.node)
            except NotFoundError:
                raise _refuse(item, "no such node in the cluster") from None
            names.setdefault(item.node, item)
        else:
            running = item.running
            assert running is not None  # noqa: S101 - a target has a node or a workload
            pods = cluster.workload_pods(running.namespace, workloads[running.label][1])
            names.setdefault(_node_of(item, pods), item)
    # The inventory first (a spec that cannot work anywhere), then the cluster's state.
    mapped: dict[str, tuple[Machine, str]] = {}
    for name, item in names.items():
        machine, source = target.mapping(name)
        if machine is None:
            raise SpecError(
                f"{item.where}: {name} has no fencing device in the inventory: a drill could "
                "not power it off, nor back on",
                hint="map it in fireproof.yaml (inventory.nodes); see `fireproof inventory show`",
            )
        mapped[name] = (machine, source)
    all_nodes = cluster.nodes()
    by_name = {n.metadata.name: n for n in all_nodes if n.metadata and n.metadata.name}
    for name in names:
        node = by_name[name]
        cordoned = node.spec is not None and bool(node.spec.unschedulable)
        if node_ready(node) != "True" or cordoned:
            state = "cordoned" if cordoned else "not Ready"
            raise Unsteady(
                f"{name} is {state}: a drill starts from a healthy node",
                hint="recover it first (`fireproof heal node NAME --recover`)",
            )
    _check_quorum(by_name, set(names))
    nodes = []
    for name, item in names.items():
        machine, source = mapped[name]
        fencer = target.fencer(machine.device)
        identity = prove_identity(cluster, name, machine, fencer, source)
        why = f"runs {item.running.label}" if item.running else "named in the spec"
        if item.on_host:
            why = f"on host {machine.host}"
        nodes.append(NodeTarget(name, machine, fencer, why, identity.value))
    if spec.recovery is Recovery.GUARD:
        _check_guard(target, clock)
    major, minor = cluster.server_version()
    environment = {
        "kubernetes": f"{major}.{minor}",
        "server": cluster.server,
        "lab": lab is not None,
        "profile": lab.profile if lab is not None else None,
        "nodes": len(all_nodes),
        "started": utc_now(clock).isoformat(timespec="seconds"),
    }
    plan = DrillPlan(spec, nodes, workloads, environment, _steps(spec, nodes, hosts), hosts)
    plan.wanted = wanted
    return plan


FREE_ADDRESSES = [f"192.0.2.{i}" for i in range(100, 200)]
"""Where the lab picks a new address from (documentation range, never contacted)."""


def _plan_change_ip(
    target: Target,
    spec: DrillSpec,
    workloads: dict[str, tuple[Any, dict[str, str]]],
    wanted: dict[str, int],
    lab: LabHooks | None,
    clock: Clock,
) -> DrillPlan:
    """Control-plane addresses change (lab only): the API path's Endpoints go stale."""
    if lab is None:
        raise SpecError(
            f"{spec.path}: fault: change-ip works in the lab only (`--lab`): on a real cluster "
            "it needs your own automation (DHCP, a re-IP) to change a machine's address",
        )
    if spec.recovery is Recovery.GUARD and not target.config.guard.repair_api_endpoints:
        raise SpecError(
            f"{spec.path}: recovery: guard repairs the Endpoints only with "
            "guard.repair_api_endpoints: true",
        )
    if len(spec.targets) != 1:
        raise SpecError(f"{spec.path}: fault: change-ip takes one target")
    item = spec.targets[0]
    cluster = target.cluster
    by_name = {n.metadata.name: n for n in cluster.nodes() if n.metadata and n.metadata.name}
    planes = sorted(n for n, obj in by_name.items() if is_control_plane(obj))
    ready = [n for n in planes if node_ready(by_name[n]) == "True"]
    if item.node is not None:
        if item.node not in by_name:
            raise _refuse(item, "no such node in the cluster")
        if item.node not in planes:
            raise _refuse(item, "not a control-plane node: its address is not in the Endpoints")
        chosen = [item.node]
    else:
        chosen = planes if item.control_planes == "all" else ready[:1]
    if not chosen:
        raise _refuse(item, "no Ready control-plane node")
    if spec.new_address is not None and len(chosen) > 1:
        raise SpecError(f"{spec.path}: new_address: names one address for one node")
    used = {internal_ip(obj) for obj in by_name.values()} | {target.config.cluster.vip}
    free = iter(a for a in FREE_ADDRESSES if a not in used)
    moves = []
    for node in chosen:
        old = internal_ip(by_name[node])
        if old is None:
            raise _refuse(item, f"{node} reports no InternalIP")
        new = spec.new_address or next(free, None)
        if new is None or new in used:
            raise _refuse(item, f"the new address {new} is in use")
        moves.append((node, old, new))
    change = AddressChange(tuple(moves), tuple(cluster.endpoints_addresses()))
    listed = ", ".join(f"{n} {old} -> {new}" for n, old, new in moves)
    steps = [
        f"change the address of {listed} (the lab's change-ip): the `kubernetes` Endpoints "
        "keep the old ones; with none of them live, in-cluster API clients lose the API",
        {
            Recovery.GUARD: "let the running guard repair the Endpoints (repair_api_endpoints)",
            Recovery.HEAL: "run `heal api-endpoints` the moment the Endpoints are stale",
            Recovery.NONE: "watch only (no recovery)",
        }[spec.recovery],
        f"watch until every SLO is decided, at most {spec.timeout:g} s",
    ]
    if spec.restore:
        steps.append("restore: the old addresses back, the Endpoints repaired, steady again")
    if spec.recovery is Recovery.GUARD:
        _check_guard(target, clock)
    major, minor = cluster.server_version()
    environment = {
        "kubernetes": f"{major}.{minor}",
        "server": cluster.server,
        "lab": True,
        "profile": lab.profile,
        "nodes": len(by_name),
        "started": utc_now(clock).isoformat(timespec="seconds"),
    }
    return DrillPlan(spec, [], workloads, environment, steps, wanted=wanted, address=change)


def _plan_scale(
    target: Target,
    spec: DrillSpec,
    workloads: dict[str, tuple[Any, dict[str, str]]],
    wanted: dict[str, int],
    lab: LabHooks | None,
    clock: Clock,
) -> DrillPlan:
    """A workload scaled: no node, no machine; the plan says whether doctor predicts it fails."""
    if spec.recovery is not Recovery.NONE:
        raise SpecError(
            f"{spec.path}: fault: scale has nothing to recover: use recovery: none",
            hint="the restore sets the replica count back",
        )
    cluster = target.cluster
    ref = spec.targets[0].workload
    assert ref is not None  # noqa: S101 - the spec parser requires a workload target
    if len(spec.targets) != 1:
        raise SpecError(f"{spec.path}: fault: scale takes one target")
    ready, before = cluster.workload_readiness(ref.namespace, ref.kind, ref.name)
    assert spec.replicas is not None  # noqa: S101 - the spec parser requires it with scale
    claims = tuple(cluster.single_node_claims(ref.kind, ref.namespace, ref.name))
    wanted = {**wanted, ref.label: spec.replicas}
    scale = ScaleTarget(ref, before, spec.replicas, claims)
    steps = [f"scale {ref.label} from {before} to {spec.replicas} replicas ({ready} Ready now)"]
    if claims and spec.replicas > 1:
        steps.append(
            f"doctor predicts it fails (FP-R3/FP-R4): it mounts ReadWriteOnce claim(s) "
            f"{', '.join(claims)}, which only one node can mount; the other replicas wait in "
            "ContainerCreating"
        )
    steps.append(f"watch until every SLO is decided, at most {spec.timeout:g} s")
    if spec.restore:
        steps.append(f"restore: scale it back to {before} replicas, wait until it is steady")
    major, minor = cluster.server_version()
    environment = {
        "kubernetes": f"{major}.{minor}",
        "server": cluster.server,
        "lab": lab is not None,
        "profile": lab.profile if lab is not None else None,
        "nodes": len(cluster.nodes()),
        "started": utc_now(clock).isoformat(timespec="seconds"),
    }
    return DrillPlan(spec, [], workloads, environment, steps, scale=scale, wanted=wanted)


def _host_targets(
    target: Target,
    spec: DrillSpec,
    lab: LabHooks | None,
    workloads: dict[str, tuple[Any, dict[str, str]]],
) -> tuple[dict[str, TargetSpec], list[HostTarget]]:
    """Each host target's host, and every node whose VM it runs (they all go down with it)."""
    cluster = target.cluster
    if spec.fault is Fault.HOST_HANG and lab is None:
        raise SpecError(f"{spec.path}: fault: host-hang works in the lab only (`--lab`)")
    if spec.recovery is Recovery.HEAL:
        raise SpecError(
            f"{spec.path}: recovery: heal fences VMs through their hypervisor, which a dead "
            "host's API cannot answer",
            hint="use recovery: guard (it fences the host through its BMC) or none",
        )
    all_names = sorted(n.metadata.name for n in cluster.nodes() if n.metadata and n.metadata.name)
    inventory = target.inventory(all_names)
    host_of = {
        name: entry.machine.host
        for name, entry in inventory.entries.items()
        if entry.machine is not None and entry.machine.host
    }
    names: dict[str, TargetSpec] = {}
    hosts: list[HostTarget] = []
    for item in spec.targets:
        host = item.host
        if item.host_of is not None:
            pods = cluster.workload_pods(item.host_of.namespace, workloads[item.host_of.label][1])
            node = _node_of(TargetSpec(running=item.host_of, where=item.where), pods)
            host = host_of.get(node)
            if host is None:
                raise _refuse(item, f"the inventory names no Proxmox host for {node}")
        assert host is not None  # noqa: S101 - a host target names one, or its workload's
        members = sorted(n for n, h in host_of.items() if h == host)
        if not members:
            raise _refuse(item, f"no node of the inventory runs on Proxmox host {host}")
        for name in members:
            names.setdefault(name, item)
        if any(h.host == host for h in hosts):
            continue
        entry = target.config.hosts.get(host)
        if spec.fault is Fault.HOST_POWER_OFF and entry is None:
            raise _refuse(
                item,
                f"host {host} has no fencing device of its own: nothing could power it off, "
                "nor back on",
                hint=f"name its BMC under hosts: in fireproof.yaml ({host}: {{device: …}})",
            )
        machine = Machine(node=host, device=entry.device, host=host) if entry else None
        fencer = target.fencer(entry.device) if entry else None
        why = f"runs {item.host_of.label}" if item.host_of else "named in the spec"
        hosts.append(HostTarget(host, machine, fencer, why))
    return names, hosts


def _check_quorum(by_name: dict[str, Any], names: set[str]) -> None:
    control = [n for n, obj in by_name.items() if is_control_plane(obj)]
    if not control or not names & set(control):
        return
    ready = [n for n in control if node_ready(by_name[n]) == "True" and n not in names]
    if len(ready) <= len(control) // 2:
        raise DrillRefused(
            f"taking down {', '.join(sorted(names & set(control)))} would leave {len(ready)} of "
            f"{len(control)} control-plane nodes Ready: below quorum (etcd would stop)",
            hint="drill one control-plane node at a time, with the others Ready",
        )


def guard_running(target: Target, clock: Clock) -> bool:
    """A guard holds its Lease (the one fireproof.yaml names) and renews it."""
    settings = target.config.guard
    lease = target.cluster.lease(settings.lease_namespace, settings.lease_name)
    holder = lease.spec.holderIdentity if lease is not None and lease.spec else None
    return bool(holder) and lease_fresh(lease, clock.time(), settings.lease_duration_seconds)


def _check_guard(target: Target, clock: Clock) -> None:
    settings = target.config.guard
    if not guard_running(target, clock):
        raise DrillRefused(
            f"recovery: guard, but no guard holds the Lease "
            f"{settings.lease_namespace}/{settings.lease_name}",
            hint="start one (`fireproof guard run`), or use recovery: heal or none",
        )


def _steps(spec: DrillSpec, nodes: list[NodeTarget], hosts: list[HostTarget]) -> list[str]:
    if spec.fault.on_host:
        steps = []
        for h in hosts:
            members = ", ".join(n.node for n in nodes if n.machine.host == h.host)
            what = (
                f"power off Proxmox host {h.host} through {h.machine.device!r}"
                if h.machine is not None and spec.fault is Fault.HOST_POWER_OFF
                else f"hang Proxmox host {h.host} (its power stays on)"
            )
            steps.append(f"{what} ({h.why}); its nodes go down with it: {members}")
    else:
        verb = {
            Fault.POWER_OFF: "hard power-off (stop) of",
            Fault.REBOOT: "hard reset (stop, then start) of",
            Fault.PARTITION: "network partition (VM keeps running) of",
        }[spec.fault]
        steps = [
            f"{verb} {n.node} ({n.why}; {n.machine.label} via {n.machine.device!r}, identity: "
            f"{n.identity})"
            for n in nodes
        ]
    if spec.proxmox_fault is not None:
        steps.append(
            f"hold Proxmox fault {spec.proxmox_fault.kind} for {spec.proxmox_fault.seconds:g} s"
        )
    steps.append(
        {
            Recovery.GUARD: "let the running guard recover it",
            Recovery.HEAL: "run `heal node` the moment the node is NotReady",
            Recovery.NONE: "watch only (no recovery)",
        }[spec.recovery]
    )
    if spec.slos:
        steps.append(f"watch until every SLO is decided, at most {spec.timeout:g} s")
    else:
        steps.append(
            f"watch for at most {spec.timeout:g} s: no SLO is given, so this drill records a "
            "timeline and can never fail"
        )
    if spec.restore:
        steps.append("restore: power the machines back on, wait Ready, untaint, uncordon")
    return steps


ProgressFn = Callable[[str], None]


def describe_error(exc: BaseException) -> str:
    return exc.message if isinstance(exc, FireproofError) else f"{type(exc).__name__}: {exc}"
