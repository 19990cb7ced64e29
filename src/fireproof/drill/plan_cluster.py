"""Plans for the faults that act on the cluster, not on a machine: a workload scaled (the
report's Traefik on RWO storage) and the control-plane addresses changed (its stale
`kubernetes` Endpoints)."""

from __future__ import annotations

from typing import Any

from fireproof.clock import Clock
from fireproof.drill.planmodel import (
    AddressChange,
    DrillPlan,
    LabHooks,
    ScaleTarget,
    check_guard,
    environment_of,
    refuse,
)
from fireproof.drill.spec import DrillSpec, Recovery, SpecError
from fireproof.kube import internal_ip, is_control_plane, node_ready
from fireproof.wiring import Target

FREE_ADDRESSES = [f"192.0.2.{i}" for i in range(100, 200)]
"""Where the lab picks a new address from (documentation range, never contacted)."""


def plan_change_ip(
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
            raise refuse(item, "no such node in the cluster")
        if item.node not in planes:
            raise refuse(item, "not a control-plane node: its address is not in the Endpoints")
        chosen = [item.node]
    else:
        chosen = planes if item.control_planes == "all" else ready[:1]
    if not chosen:
        raise refuse(item, "no Ready control-plane node")
    if spec.new_address is not None and len(chosen) > 1:
        raise SpecError(f"{spec.path}: new_address: names one address for one node")
    used = {internal_ip(obj) for obj in by_name.values()} | {target.config.cluster.vip}
    free = iter(a for a in FREE_ADDRESSES if a not in used)
    moves = []
    for node in chosen:
        old = internal_ip(by_name[node])
        if old is None:
            raise refuse(item, f"{node} reports no InternalIP")
        new = spec.new_address or next(free, None)
        if new is None or new in used:
            raise refuse(item, f"the new address {new} is in use")
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
        check_guard(target, clock)
    environment = environment_of(target, lab, clock, len(by_name))
    return DrillPlan(spec, [], workloads, environment, steps, wanted=wanted, address=change)


def plan_scale(
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
    environment = environment_of(target, lab, clock, len(cluster.nodes()))
    return DrillPlan(spec, [], workloads, environment, steps, scale=scale, wanted=wanted)
