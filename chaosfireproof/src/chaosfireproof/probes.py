"""Probes: is a node Ready, is a workload running (Ready, and not on a NotReady node), how many
volumes are attached to two nodes, how many doctor findings of a severity."""

from typing import Any

from chaosfireproof import target_from
from fireproof.doctor import Context, Severity, run_checks, select
from fireproof.errors import UsageError
from fireproof.heal import plan_endpoints
from fireproof.kube import node_ready as _node_ready
from fireproof.kube import pod_running_ready
from fireproof.kube.snapshot import take_snapshot

__all__ = [
    "api_endpoints_live",
    "doctor_findings",
    "double_attachments",
    "node_ready",
    "ready_replicas",
    "workload_running",
]


def node_ready(
    node: str, configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None
) -> bool:
    """True when NODE's Ready condition is True."""
    return _node_ready(target_from(configuration).cluster.node(node)) == "True"


def workload_running(
    namespace: str,
    kind: str,
    name: str,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> bool:
    """True when a pod of the workload is Running and Ready on a node that is Ready."""
    cluster = target_from(configuration).cluster
    selector = cluster.workload_selector(namespace, kind, name)
    ready_nodes = {
        n.metadata.name for n in cluster.nodes() if n.metadata and _node_ready(n) == "True"
    }
    return any(
        pod_running_ready(pod) and pod.spec is not None and pod.spec.nodeName in ready_nodes
        for pod in cluster.workload_pods(namespace, selector)
    )


def ready_replicas(
    namespace: str,
    kind: str,
    name: str,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> int:
    """How many replicas of the Deployment or StatefulSet are Ready (one, on an RWO volume,
    however many are asked for)."""
    ready, _wanted = target_from(configuration).cluster.workload_readiness(namespace, kind, name)
    return ready


def api_endpoints_live(
    configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None
) -> bool:
    """True when the `kubernetes` Endpoints name only live addresses: Ready control-plane nodes'
    or the VIP of fireproof.yaml. False after an address change left them stale."""
    target = target_from(configuration)
    vip = target.config.cluster.vip
    plan = plan_endpoints(target.cluster, vip=vip, to="nodes")
    live = set(plan.live) | ({vip} if vip else set())
    return bool(plan.current) and set(plan.current) <= live


def double_attachments(
    configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None
) -> int:
    """How many volumes have attached VolumeAttachments on two or more nodes right now."""
    nodes_of: dict[str, set[str]] = {}
    for va in target_from(configuration).cluster.volume_attachments():
        if va.status is not None and va.status.attached and va.spec.source.persistentVolumeName:
            nodes_of.setdefault(va.spec.source.persistentVolumeName, set()).add(va.spec.nodeName)
    return sum(1 for nodes in nodes_of.values() if len(nodes) > 1)


def doctor_findings(
    severity: str = "critical",
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> int:
    """How many `fireproof doctor` findings of SEVERITY (critical, warning, info) or worse."""
    try:
        floor = Severity(severity)
    except ValueError:
        raise UsageError(f"severity must be critical, warning or info; got {severity!r}") from None
    target = target_from(configuration)
    checks = select()
    needed = {kind for check in checks for kind in check.needs}
    snap = take_snapshot(target.cluster, None, needed, endpoints=True)
    report = run_checks(checks, snap, Context(vip=target.config.cluster.vip), target.cluster.server)
    return sum(1 for f in report.findings if f.severity.rank >= floor.rank)
