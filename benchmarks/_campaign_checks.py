"""The fault campaign's invariants, checked against the lab's own state and evidence (the write
ledger, the emulator's power history, the API server's audit log), never against guard's claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet
from lightkube.resources.core_v1 import Node

from fireproof.kube import Cluster, KubeApiError, KubeUnreachableError, translate_errors
from fireproof.lab.evidence import (
    STOPS,
    fenced_twice,
    read_power_history,
    read_power_tasks,
    read_releases,
    released_while_running,
)
from fireproof.lab.ledger import check as check_ledger
from fireproof.lab.ledger import read_ledger
from fireproof.lab.state import LabPaths

REMEDIATION = "fireproof.io/remediation"
BAD_TAINTS = (
    "node.kubernetes.io/out-of-service",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/not-ready",
)
INVARIANTS = {
    1: "no split brain",
    2: "fencing before release",
    3: "nothing done in a storm or to a healthy node",
    4: "everything recovers",
    5: "exactly once",
    6: "the control plane never crashes",
}
PANIC = "Observed a panic"
"""What client-go logs when a controller goroutine panics (the process then exits)."""
COMPONENTS = ("kube-controller-manager", "kube-scheduler", "kube-apiserver")


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: int
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "invariant": self.invariant,
            "name": INVARIANTS[self.invariant],
            "detail": self.detail,
        }


def not_recovered(cluster: Cluster) -> list[str]:
    """What still is not back: empty when every node is Ready, schedulable, untainted and has
    no remediation left, and every workload has all its replicas ready."""
    problems: list[str] = []
    try:
        with translate_errors():
            problems = _problems(cluster)
    except (KubeApiError, KubeUnreachableError) as exc:
        problems.append(f"API: {exc.message}")
    return problems


def _problems(cluster: Cluster) -> list[str]:
    problems: list[str] = []
    for node in cluster.client.list(Node):
        name = node.metadata.name if node.metadata else "?"
        conditions = (node.status.conditions if node.status else None) or []
        if not any(c.type == "Ready" and c.status == "True" for c in conditions):
            problems.append(f"{name} not Ready")
        if node.spec and node.spec.unschedulable:
            problems.append(f"{name} cordoned")
        taints = {t.key for t in ((node.spec.taints if node.spec else None) or [])}
        problems += [f"{name} tainted {t}" for t in BAD_TAINTS if t in taints]
        if REMEDIATION in ((node.metadata.annotations if node.metadata else None) or {}):
            problems.append(f"{name} has a remediation left")
    for ds in cluster.client.list(DaemonSet, namespace="*"):
        want = ds.status.desiredNumberScheduled if ds.status else 0
        if ds.status is None or (ds.status.numberReady or 0) < want:
            problems.append(f"daemonset {_name(ds)} not ready")
    workloads: list[Any] = [
        *cluster.client.list(Deployment, namespace="*"),
        *cluster.client.list(StatefulSet, namespace="*"),
    ]
    for workload in workloads:
        want = (workload.spec.replicas if workload.spec else None) or 0
        ready = (workload.status.readyReplicas if workload.status else None) or 0
        if ready < want:
            problems.append(f"{type(workload).__name__.lower()} {_name(workload)} {ready}/{want}")
    return problems


def control_plane_panics(paths: LabPaths) -> dict[str, int]:
    """Panics logged so far by each control-plane component (a lab restart appends)."""
    counts: dict[str, int] = {}
    for component in COMPONENTS:
        try:
            with paths.log(component).open(errors="replace") as log:
                counts[component] = sum(PANIC in line for line in log)
        except FileNotFoundError:
            counts[component] = 0
    return counts


def crashed(before: dict[str, int], after: dict[str, int]) -> list[Violation]:
    """Invariant 6: guard's writes must never take a control-plane component down (the
    controller-manager's node lifecycle controller panics on some label changes)."""
    return [
        Violation(6, f"{c} panicked {after[c] - before.get(c, 0)} time(s) (see its log)")
        for c in sorted(after)
        if after[c] > before.get(c, 0)
    ]


def _name(obj: Any) -> str:
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta else "?"


def check_run(
    paths: LabPaths,
    *,
    t0: float,
    cleared: float,
    guard_user: str,
    guard_kube_user: str,
    killed: set[str],
    domains: dict[str, str],
    down_at: dict[str, float],
    max_unhealthy: int,
    grace: float,
) -> list[Violation]:
    """Invariants 1, 2, 3 and 5 over one run's evidence (4 is checked while waiting).

    A storm holds from the moment more than ``max_unhealthy`` of the run's victims were off for
    ``grace`` seconds (guard's confirmation and two polls: its fair chance to see them all)
    until the faults were cleared; guard may have begun with the first victims before that.
    Victims are counted by failure domain (``domains``: the nodes of a dead host are one, down
    from ``down_at`` of that host: a hung host's VMs never read off).
    """
    out: list[Violation] = []
    report = check_ledger(read_ledger(paths.ledger, since=t0))
    out += [
        Violation(
            1,
            f"{s.volume} written by {' and '.join(s.nodes)} for {s.last - s.first:.1f} s "
            f"({', '.join(sorted(s.pods))})",
        )
        for s in report.split_brains
    ]
    history = read_power_history(paths.power_log)
    releases = read_releases(paths.audit_log, since=t0)
    out += [
        Violation(2, f"{r.what} on {r.node} by {r.actor} while its VM was running")
        for r in released_while_running(releases, history)
    ]
    tasks = [t for t in read_power_tasks(paths.power_log) if t.t >= t0]
    guard_stops = [t for t in tasks if t.user == guard_user and t.task in STOPS and t.changes]
    out += [
        Violation(3, f"guard stopped {t.vm}, which this run did not take down")
        for t in guard_stops
        if t.vm not in killed
    ]
    first_off: dict[str, float] = {}
    for vm in killed:
        domain = domains.get(vm, f"node/{vm}")
        off = down_at.get(domain)
        if off is None:
            off = min(
                (c.t for c in history if c.vm == vm and not c.running and c.t >= t0),
                default=cleared,
            )
        first_off[domain] = min(off, first_off.get(domain, off))
    went_off = sorted(first_off.values())
    if len(went_off) > max_unhealthy and went_off[max_unhealthy] < cleared:
        storm_from = went_off[max_unhealthy] + grace
        out += [
            Violation(3, f"guard stopped {t.vm} during a storm")
            for t in guard_stops
            if storm_from <= t.t <= cleared
        ]
        out += [
            Violation(3, f"{r.what} on {r.node} during a storm")
            for r in releases
            if storm_from <= r.t <= cleared and r.actor == guard_kube_user
        ]
    out += [
        Violation(5, f"guard fenced {vm} twice in one death ({second - first:.1f} s apart)")
        for vm, first, second in fenced_twice(tasks, history, guard_user, since=t0)
    ]
    return out


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": round(ordered[-1], 1)}
