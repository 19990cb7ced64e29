"""The in-cluster path to the API server (``kubernetes.default`` -> Endpoints), simulated.

Pods annotated ``lab.fireproof.dev/needs-api: "true"`` (CoreDNS, longhorn-manager) talk to
10.96.0.1:443. kube-proxy sends that traffic to the addresses in the ``kubernetes`` Endpoints;
when none of them is a live control-plane address, every connection fails with ``no route to
host`` and those pods crash-loop with kubelet's exponential back-off, until the Endpoints
are fixed. This is phase 1 of the incident.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from lightkube.resources.core_v1 import Endpoints, Pod

from fireproof.kube import KubeApiError, KubeUnreachableError, translate_errors
from fireproof.kube.watch import follow
from fireproof.lab.addresses import KUBERNETES_SERVICE_IP
from fireproof.lab.agent.fleet import Fleet, SimNode
from fireproof.lab.agent.objects import crashed_pod_status, timestamp
from fireproof.lab.agent.pods import Key, PodRunner, pod_key
from fireproof.lab.topology import Role

log = logging.getLogger(__name__)
NEEDS_API = "lab.fireproof.dev/needs-api"
API_ERROR = (
    f'Get "https://{KUBERNETES_SERVICE_IP}:443/api": dial tcp {KUBERNETES_SERVICE_IP}:443: '
    "connect: no route to host"
)
MAX_BACKOFF_FACTOR = 30  # kubelet: 10 s doubling up to 5 min


@dataclass(slots=True)
class CrashState:
    restarts: int
    backoff: float
    next_attempt: float


def needs_api(pod: Pod) -> bool:
    annotations = (pod.metadata.annotations if pod.metadata else None) or {}
    return annotations.get(NEEDS_API) == "true"


class ApiPath:
    def __init__(self, fleet: Fleet, pods: PodRunner, vip: str | None) -> None:
        self.fleet = fleet
        self.pods = pods
        self.vip = vip
        self.endpoint_addresses: set[str] | None = None
        self.crashing: dict[Key, CrashState] = {}
        pods.start_gate(self._gate)
        pods.holds_not_ready(lambda key: key in self.crashing)

    def live_addresses(self) -> set[str]:
        live = {
            n.address
            for n in self.fleet.nodes.values()
            if n.spec.role is Role.CONTROL_PLANE and n.powered
        }
        if live and self.vip:
            live.add(self.vip)  # the VIP follows whichever control-plane node is alive
        return live

    def healthy(self) -> bool:
        if self.endpoint_addresses is None:
            return True  # not observed yet: do not invent an outage
        return bool(self.endpoint_addresses & self.live_addresses())

    async def watch_endpoints(self) -> None:
        async def listed(items: list[Endpoints]) -> None:
            if items:
                await changed("MODIFIED", items[0])
            else:
                await changed("DELETED", Endpoints())

        async def changed(kind: str, endpoints: Endpoints) -> None:
            if kind == "DELETED":
                addresses: set[str] = set()
            else:
                addresses = {a.ip for s in (endpoints.subsets or []) for a in (s.addresses or [])}
            if addresses != self.endpoint_addresses:
                self.endpoint_addresses = addresses
                log.info(
                    "kubernetes endpoints: %s (healthy: %s)",
                    sorted(self.endpoint_addresses),
                    self.healthy(),
                )
            self.pods.poke()

        await follow(
            self.fleet.client,
            Endpoints,
            listed,
            changed,
            what="endpoints",
            namespace="default",
            fields={"metadata.name": "kubernetes"},
        )

    async def _gate(self, pod: Pod, _node: SimNode) -> bool:
        """Pods that need the API only start (successfully) while the path is healthy."""
        if not needs_api(pod) or self.healthy():
            self.crashing.pop(pod_key(pod), None)
            return True
        return False

    async def run(self, period: float = 0.5) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await self._step()
            except Exception:  # keep simulating; one bad pod must not stop the loop
                log.exception("api path step failed")

    async def _step(self) -> None:
        healthy = self.healthy()
        now = time.monotonic()
        for key, pod in list(self.pods.cache.items()):
            if not needs_api(pod) or pod.spec is None or pod.metadata is None:
                continue
            if pod.metadata.deletionTimestamp is not None:
                continue
            node = self.fleet.nodes.get(pod.spec.nodeName or "")
            if node is None or not node.active or not node.booted.is_set():
                continue
            state = self.crashing.get(key)
            if healthy:
                # The next restart after the back-off finds the API: the pod runs again.
                if (
                    state is not None
                    and now >= state.next_attempt
                    and await self.pods.restart(key, pod, node, restarts=state.restarts + 1)
                ):
                    self.crashing.pop(key, None)
                continue
            if state is None:
                base = self.fleet.profile.crash_backoff_seconds
                restarts = (
                    max((c.restartCount for c in (pod.status.containerStatuses or [])), default=0)
                    if pod.status
                    else 0
                )
                state = CrashState(restarts=restarts, backoff=base, next_attempt=now)
                self.crashing[key] = state
            if now >= state.next_attempt:
                state.restarts += 1
                await self._crash(key, pod, node, state)
                state.next_attempt = now + state.backoff
                state.backoff = min(
                    state.backoff * 2, self.fleet.profile.crash_backoff_seconds * MAX_BACKOFF_FACTOR
                )

    async def _crash(self, key: Key, pod: Pod, node: SimNode, state: CrashState) -> None:
        spec = pod.spec
        if spec is None:
            return
        patch = crashed_pod_status(
            containers=[(c.name, c.image or "") for c in spec.containers],
            restart_count=state.restarts,
            backoff_seconds=state.backoff,
            pod_name=key[1],
            message=API_ERROR,
            finished_at=timestamp(),
        )
        try:
            with translate_errors():
                await self.fleet.client.patch(Pod.Status, key[1], patch, namespace=key[0])
        except (KubeApiError, KubeUnreachableError) as exc:
            log.info("pod %s/%s crash not recorded: %s", *key, exc)
            return
        await self.fleet.emit(
            PodRunner.ref(pod),
            "BackOff",
            "Back-off restarting failed container",
            warning=True,
            host=node.spec.name,
        )
