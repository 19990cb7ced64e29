"""`heal api-endpoints`: point the `kubernetes` Endpoints at a live control plane again.

Pods reach the API through the `kubernetes` Service (10.96.0.1), whose Endpoints must name
live control-plane addresses (or the VIP). When the control-plane machines changed address and
the Endpoints did not follow, every in-cluster API client (CoreDNS, kube-proxy, CSI managers)
crash-loops. The repair: rewrite the Endpoints, then restart CoreDNS and kube-proxy so they
leave their back-off at once instead of after up to 5 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from fireproof.errors import FireproofError, PermanentError
from fireproof.heal.journal import Journal
from fireproof.kube import Cluster, internal_ip, is_control_plane, node_ready

RESTARTS = (("Deployment", "kube-system", "coredns"), ("DaemonSet", "kube-system", "kube-proxy"))
API_PORT = 6443


@dataclass(frozen=True, slots=True)
class EndpointsPlan:
    current: tuple[str, ...]
    target: tuple[str, ...]
    live: tuple[str, ...]
    """Addresses of the Ready control-plane nodes."""
    restarts: tuple[tuple[str, str, str], ...]

    @property
    def needed(self) -> bool:
        return set(self.current) != set(self.target)

    @property
    def steps(self) -> tuple[str, ...]:
        if not self.needed:
            return ()
        return (
            f"set the kubernetes Endpoints to {', '.join(self.target)} "
            f"(now {', '.join(self.current) or 'empty'})",
            *(f"restart {kind} {ns}/{name}" for kind, ns, name in self.restarts),
        )


def plan_endpoints(cluster: Cluster, *, vip: str | None, to: str = "auto") -> EndpointsPlan:
    live = tuple(
        sorted(
            ip
            for node in cluster.nodes()
            if is_control_plane(node)
            and node_ready(node) == "True"
            and (ip := internal_ip(node)) is not None
        )
    )
    if to == "vip" and not vip:
        raise PermanentError("--to vip needs cluster.vip in fireproof.yaml")
    if (to == "vip") or (to == "auto" and vip):
        target: tuple[str, ...] = (vip,) if vip else ()
    else:
        target = live
    if not target:
        raise PermanentError(
            "no Ready control-plane node with an InternalIP: nothing live to point the "
            "Endpoints at",
            hint="bring a control-plane node back first",
        )
    current = tuple(cluster.endpoints_addresses())
    return EndpointsPlan(current, target, live, RESTARTS)


def apply_endpoints(cluster: Cluster, plan: EndpointsPlan, journal: Journal) -> None:
    if not plan.needed:
        journal.record(
            "endpoints", f"already {', '.join(plan.current)}: nothing to do", status="skipped"
        )
        return
    try:
        cluster.set_endpoints(list(plan.target), API_PORT)
    except FireproofError as exc:
        journal.record(
            "endpoints",
            f"update failed: {exc.message}",
            status="failed",
            event="FireproofEndpointsFailed",
        )
        raise
    journal.record(
        "endpoints",
        f"kubernetes Endpoints now {', '.join(plan.target)} (were {', '.join(plan.current)})",
        event="FireproofEndpointsRepaired",
    )
    for kind, namespace, name in plan.restarts:
        if cluster.restart(kind, namespace, name):
            journal.record(
                "restart", f"restarted {kind} {namespace}/{name}", event="FireproofRestarted"
            )
        else:
            journal.record("restart", f"{kind} {namespace}/{name} not present", status="skipped")
