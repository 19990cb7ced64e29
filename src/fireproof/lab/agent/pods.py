"""Pods on simulated nodes: start them when bound, stop and delete them when deleted.

One watch over all pods bound to any node feeds a cache; each pod is handled by at most one
task at a time. Nothing happens for pods of a node that is off or cut off, which is how their
pods end up stuck Terminating after a hard power-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import lightkube
from lightkube.models.core_v1 import ContainerStatus
from lightkube.resources.core_v1 import Pod

from fireproof.kube import KubeApiError, KubeUnreachableError, translate_errors
from fireproof.kube.watch import follow
from fireproof.lab.addresses import pod_address
from fireproof.lab.agent.fleet import Fleet, SimNode
from fireproof.lab.agent.objects import running_pod_status, timestamp

log = logging.getLogger(__name__)

Key = tuple[str, str]  # namespace, name
StartGate = Callable[[Pod, SimNode], Awaitable[bool]]
"""Decides whether a pod's containers may start now (storage plugs in here)."""
GoneHook = Callable[[Key, str], Awaitable[None]]
"""Called with (pod key, node name) once a pod bound to a node is deleted from the API."""
StartedHook = Callable[[Pod, SimNode], None]
"""Called once a node reported a pod's containers running (again)."""
StoppingHook = Callable[[Pod], Awaitable[None]]
"""Awaited when a pod is being deleted, before its node reports it gone (stops processes)."""
NotReadyProvider = Callable[[Pod], frozenset[str]]
"""Names of a pod's containers that a probe does not (yet) call ready."""


def pod_key(pod: Pod) -> Key:
    meta = pod.metadata
    if meta is None or meta.name is None:
        raise ValueError("pod without a name")  # the API server never sends one
    return (meta.namespace or "default", meta.name)


def _uid(pod: Pod) -> str:
    return (pod.metadata.uid if pod.metadata else None) or ""


def _restart_count(pod: Pod) -> int:
    statuses: list[ContainerStatus] = (pod.status.containerStatuses if pod.status else None) or []
    return max((s.restartCount for s in statuses), default=0)


class PodRunner:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.client = fleet.client
        self.cache: dict[Key, Pod] = {}
        self._busy: set[Key] = set()
        self._pod_counter: dict[str, int] = {}
        self._start_gates: list[StartGate] = []
        self._gone_hooks: list[GoneHook] = []
        self._started_hooks: list[StartedHook] = []
        self._stopping_hooks: list[StoppingHook] = []
        self._not_ready_providers: list[NotReadyProvider] = []
        self._held_not_ready: list[Callable[[Key], bool]] = []
        """Other simulators that keep a pod not Ready on purpose (a crash loop)."""
        self._started_boot: dict[Key, str] = {}
        """Boot ID under which each pod's containers were last started."""
        self._wake = asyncio.Event()
        fleet.on_boot(self._after_boot)

    def start_gate(self, gate: StartGate) -> None:
        self._start_gates.append(gate)

    def on_pod_gone(self, hook: GoneHook) -> None:
        self._gone_hooks.append(hook)

    def on_started(self, hook: StartedHook) -> None:
        self._started_hooks.append(hook)

    def on_stopping(self, hook: StoppingHook) -> None:
        self._stopping_hooks.append(hook)

    def probed_by(self, provider: NotReadyProvider) -> None:
        """Containers ``provider(pod)`` names are reported not ready when (re)started."""
        self._not_ready_providers.append(provider)

    def holds_not_ready(self, predicate: Callable[[Key], bool]) -> None:
        """``predicate(key)``: that pod is not Ready on purpose; do not report it Ready."""
        self._held_not_ready.append(predicate)

    def pods_on(self, node_name: str) -> list[Pod]:
        return [p for p in self.cache.values() if p.spec and p.spec.nodeName == node_name]

    def poke(self) -> None:
        """Ask for a reconcile pass soon (e.g. a volume got attached)."""
        self._wake.set()

    async def watch(self) -> None:
        await follow(
            self.client,
            Pod,
            self._listed,
            self._changed,
            what="pod",
            namespace=lightkube.ALL_NS,
            fields={"spec.nodeName": lightkube.operators.not_equal("")},
        )

    async def _listed(self, pods: list[Pod]) -> None:
        # The whole current state (first start, or after a lost watch): pods deleted meanwhile
        # are gone now, as if their DELETED events had arrived.
        current = {pod_key(p): p for p in pods}
        for key, stale in list(self.cache.items()):
            if key not in current or _uid(current[key]) != _uid(stale):
                await self._changed("DELETED", stale)
        for pod in pods:
            await self._changed("MODIFIED", pod)

    async def _changed(self, kind: str, pod: Pod) -> None:
        key = pod_key(pod)
        if kind == "DELETED":
            if key in self.cache and _uid(self.cache[key]) != _uid(pod):
                return  # an older pod of that name; the cached one is newer
            self.cache.pop(key, None)
            self._started_boot.pop(key, None)
            node_name = pod.spec.nodeName if pod.spec else None
            for hook in self._gone_hooks:
                if node_name:
                    await hook(key, node_name)
        else:
            self.cache[key] = pod
            self._consider(key)

    async def resync(self, period: float) -> None:
        """Periodically revisit every pod: retries failed work, catches missed events."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=period)
            self._wake.clear()
            for key in list(self.cache):
                self._consider(key)

    def _consider(self, key: Key) -> None:
        pod = self.cache.get(key)
        if pod is None or key in self._busy or pod.spec is None or pod.spec.nodeName is None:
            return
        node = self.fleet.nodes.get(pod.spec.nodeName)
        if node is None or not node.active or not node.booted.is_set():
            return
        action: Callable[[Key, Pod, SimNode], Coroutine[Any, Any, None]] | None = None
        if pod.metadata and pod.metadata.deletionTimestamp is not None:
            action = self._stop
        elif self._needs_start(key, pod, node):
            action = self._start
        elif self._ready_lost(key, pod, node):
            action = self._report_ready
        if action is None:
            return
        self._busy.add(key)
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(action(key, pod, node))
        task.add_done_callback(lambda _t: self._busy.discard(key))

    def _needs_start(self, key: Key, pod: Pod, node: SimNode) -> bool:
        phase = pod.status.phase if pod.status else None
        if phase in ("Succeeded", "Failed"):
            return False
        if phase != "Running":
            return True
        # Running in the API but not under this boot: the node rebooted and restarts it.
        return self._started_boot.get(key, node.boot_id) != node.boot_id

    def _ready_lost(self, key: Key, pod: Pod, node: SimNode) -> bool:
        """Running under this boot, but the API says not Ready: the node lifecycle controller
        marked it so while the node was unreachable (a partition, an API outage)."""
        if self._started_boot.get(key) != node.boot_id:
            return False
        if any(held(key) for held in self._held_not_ready):
            return False
        conditions = (pod.status.conditions if pod.status else None) or []
        return any(c.type == "Ready" and c.status != "True" for c in conditions)

    async def _report_ready(self, key: Key, pod: Pod, node: SimNode) -> None:
        # What the kubelet's status manager does once it reaches the API server again: its
        # own view (the containers run) overwrites the stale one.
        await self.restart(key, pod, node, restarts=_restart_count(pod))

    async def _start(self, key: Key, pod: Pod, node: SimNode) -> None:
        boot = node.boot_id
        for gate in self._start_gates:
            if not await gate(pod, node):
                return
        await asyncio.sleep(self.fleet.profile.pod_start_seconds)
        if not node.active or node.boot_id != boot:
            return
        running = (pod.status.phase if pod.status else None) == "Running"
        await self.restart(
            key, pod, node, restarts=_restart_count(pod) + (1 if running else 0), boot=boot
        )

    async def restart(
        self, key: Key, pod: Pod, node: SimNode, *, restarts: int, boot: str | None = None
    ) -> bool:
        """Report the pod's containers running (again), with ``restarts`` restarts so far.

        Returns whether the API server took the new status and the containers run: a start
        begun under a boot that ended meanwhile (the VM powered off, perhaps on again, while
        the status was on its way) started nothing; the containers died with that boot.
        """
        boot = boot or node.boot_id
        spec = pod.spec
        if spec is None or pod.metadata is None:
            return False
        ip = self._pod_ip(pod, node)
        patch = running_pod_status(
            pod_uid=pod.metadata.uid or "",
            containers=[(c.name, c.image or "") for c in spec.containers],
            init_containers=[(c.name, c.image or "") for c in (spec.initContainers or [])],
            host_ip=node.spec.address,
            pod_ip=ip,
            restart_count=restarts,
            started_at=timestamp(),
            not_ready=frozenset().union(*(p(pod) for p in self._not_ready_providers)),
        )
        # The kubelet's status manager puts the pod's UID in its patch: a pod deleted and
        # recreated under the same name (a StatefulSet's) is refused, never overwritten.
        patch["metadata"] = {"uid": pod.metadata.uid}
        try:
            with translate_errors():
                await self.client.patch(Pod.Status, key[1], patch, namespace=key[0])
        except (KubeApiError, KubeUnreachableError) as exc:
            log.info("pod %s/%s not started: %s", *key, exc)
            return False
        if node.boot_id != boot or not node.powered:
            log.info("pod %s/%s: its VM restarted while it was starting; not started", *key)
            return False
        self._started_boot[key] = node.boot_id
        for hook in self._started_hooks:
            hook(pod, node)
        await self.fleet.emit(self.ref(pod), "Started", "Started container(s)", host=node.spec.name)
        return True

    def _pod_ip(self, pod: Pod, node: SimNode) -> str:
        if pod.spec and pod.spec.hostNetwork:
            return node.spec.address
        # A pod keeps its address while its containers restart; the API server also refuses a
        # second address of the same family (podIPs merge by ip).
        if pod.status and pod.status.podIP:
            return pod.status.podIP
        count = self._pod_counter.get(node.spec.name, 0)
        self._pod_counter[node.spec.name] = count + 1
        return pod_address(node.index, count)

    async def _stop(self, key: Key, pod: Pod, node: SimNode) -> None:
        for hook in self._stopping_hooks:
            await hook(pod)
        grace = pod.metadata.deletionGracePeriodSeconds if pod.metadata else None
        await asyncio.sleep(min(float(grace or 0), self.fleet.profile.pod_stop_seconds))
        if not node.active:
            return
        await self._delete(key, pod)

    async def _delete(self, key: Key, pod: Pod) -> None:
        current = self.cache.get(key)
        # A StatefulSet may have recreated the name elsewhere: only delete the object we saw.
        if current is None or (
            current.metadata and pod.metadata and current.metadata.uid != pod.metadata.uid
        ):
            return
        try:
            with translate_errors():
                await self.client.delete(Pod, key[1], namespace=key[0], grace_period=0)
        except (KubeApiError, KubeUnreachableError) as exc:
            log.info("pod %s/%s not deleted: %s", *key, exc)

    async def _after_boot(self, node: SimNode) -> None:
        # A rebooted kubelet finds no containers: terminating pods are gone for good, the others
        # are restarted by the next reconcile pass.
        for pod in self.pods_on(node.spec.name):
            if pod.metadata and pod.metadata.deletionTimestamp is not None:
                await self._delete(pod_key(pod), pod)
        self.poke()

    @staticmethod
    def ref(pod: Pod) -> dict[str, Any]:
        meta = pod.metadata
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "name": meta.name if meta else None,
            "namespace": meta.namespace if meta else None,
            "uid": meta.uid if meta else None,
        }
