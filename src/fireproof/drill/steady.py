"""The steady state a drill starts from and restores to: its nodes Ready, schedulable and
untainted, and every workload it names with all its replicas Ready.

A drill run right after another (a game day) waits here, bounded and said, instead of
refusing because the previous drill's replacement pod was still starting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fireproof.clock import SYSTEM_CLOCK, Clock, poll_until
from fireproof.drill.spec import WorkloadRef
from fireproof.errors import FireproofError, NotFoundError, PermanentError
from fireproof.kube import Cluster, node_ready

STEADY_TIMEOUT = 180.0
"""Seconds a drill waits for the steady state by default (``steady_timeout:`` in a spec)."""
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


class DrillNotStarted(PermanentError):
    """The cluster did not reach the steady state the drill starts from (exit code 4)."""


def unsteady(cluster: Cluster, workloads: Iterable[WorkloadRef], nodes: Iterable[str]) -> list[str]:
    """What keeps the cluster from its steady state (empty: steady)."""
    problems = []
    for ref in workloads:
        ready, wanted = cluster.workload_readiness(ref.namespace, ref.kind, ref.name)
        if ready < wanted:
            problems.append(f"{ref.label}: {ready}/{wanted} ready")
    for name in nodes:
        node = cluster.node(name)
        taints = {t.key for t in ((node.spec.taints if node.spec else None) or [])}
        if node_ready(node) != "True":
            problems.append(f"node {name} not Ready")
        elif node.spec is not None and node.spec.unschedulable:
            problems.append(f"node {name} cordoned")
        elif OUT_OF_SERVICE in taints:
            problems.append(f"node {name} still tainted out-of-service")
    return problems


def wait_steady(
    cluster: Cluster,
    workloads: Iterable[WorkloadRef],
    nodes: Iterable[str],
    *,
    timeout: float = STEADY_TIMEOUT,
    progress: Callable[[str], None] = lambda _line: None,
    clock: Clock = SYSTEM_CLOCK,
) -> tuple[float, list[str]]:
    """Seconds waited, and what was still not steady when ``timeout`` ran out (empty: steady)."""
    refs, names = list(workloads), list(nodes)
    started = clock.monotonic()
    last: list[str] = []
    said: list[str] = []

    def steady() -> bool | None:
        try:
            last[:] = unsteady(cluster, refs, names)
        except NotFoundError:
            raise  # no wait makes a missing workload or node appear
        except FireproofError as exc:  # an API hiccup is one more reason to wait
            last[:] = [exc.message]
        if last and last != said:
            progress(f"  waiting for the steady state: {'; '.join(last)}")
            said[:] = last
        return True if not last else None

    poll_until(steady, timeout=timeout, interval=1.0, clock=clock)
    return clock.monotonic() - started, list(last)
