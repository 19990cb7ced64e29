"""A drill's plan: which nodes, which machines, which workloads, checked before anything is done.

Everything that can refuse a drill refuses here, before the fault: an unknown workload, a node
without a fencing device, a machine that is not the node's, a target whose loss would break
control-plane quorum, a lab-only fault on a real cluster, `recovery: guard` with no guard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fireproof.clock import SYSTEM_CLOCK, Clock
from fireproof.drill.plan_cluster import plan_change_ip, plan_scale
from fireproof.drill.plan_hosts import host_targets
from fireproof.drill.planmodel import (
    GUARD_PAUSE,
    AddressChange,
    DrillPlan,
    DrillRefused,
    HostTarget,
    LabHooks,
    NodeTarget,
    ScaleTarget,
    Unsteady,
    check_guard,
    environment_of,
    guard_running,
    node_of,
    refuse,
)
from fireproof.drill.spec import DrillSpec, Fault, Recovery, SloKind, SpecError, TargetSpec
from fireproof.errors import FireproofError, NotFoundError
from fireproof.fencing import Machine
from fireproof.heal.node import prove_identity
from fireproof.kube import is_control_plane, node_ready
from fireproof.wiring import Target

__all__ = [
    "GUARD_PAUSE",
    "AddressChange",
    "DrillPlan",
    "DrillRefused",
    "HostTarget",
    "LabHooks",
    "NodeTarget",
    "ScaleTarget",
    "Unsteady",
    "describe_error",
    "plan_drill",
]


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
        return plan_scale(target, spec, workloads, wanted, lab, clock)
    if spec.fault is Fault.CHANGE_IP:
        return plan_change_ip(target, spec, workloads, wanted, lab, clock)
    names: dict[str, TargetSpec] = {}
    hosts: list[HostTarget] = []
    if spec.fault.on_host:
        names, hosts = host_targets(target, spec, lab, workloads)
    for item in spec.targets if not spec.fault.on_host else ():
        if item.node is not None:
            try:
                cluster.node(item.node)
            except NotFoundError:
                raise refuse(item, "no such node in the cluster") from None
            names.setdefault(item.node, item)
        else:
            running = item.running
            assert running is not None  # noqa: S101 - a target has a node or a workload
            pods = cluster.workload_pods(running.namespace, workloads[running.label][1])
            names.setdefault(node_of(item, pods), item)
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
        check_guard(target, clock)
    environment = environment_of(target, lab, clock, len(all_nodes))
    plan = DrillPlan(spec, nodes, workloads, environment, _steps(spec, nodes, hosts), hosts)
    plan.wanted = wanted
    return plan


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
