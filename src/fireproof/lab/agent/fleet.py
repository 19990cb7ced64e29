"""Every simulated kubelet of the lab, in one asyncio process.

A node is a VM that is either powered or not, running a kubelet that either reaches the API
server or not. A powered-off node does nothing at all: no Lease, no status, no pod updates,
exactly like a machine whose power was cut. Powering on is a reboot: a new boot ID, status
re-posted, terminating pods cleaned up, surviving pods' containers restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import lightkube
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Node

from fireproof.kube import KubeApiError, KubeNotFoundError, KubeUnreachableError, translate_errors
from fireproof.kube.watch import follow
from fireproof.lab.agent.objects import (
    event_manifest,
    lease_manifest,
    micro_timestamp,
    node_manifest,
    node_status,
    timestamp,
)
from fireproof.lab.profiles import TimingProfile
from fireproof.lab.topology import NodeSpec

log = logging.getLogger(__name__)


@dataclass(slots=True)
class HeartbeatStats:
    """Gaps between successful Lease renewals of one node while it is up."""

    renewals: int = 0
    failures: int = 0
    max_gap: float = 0.0
    total_gap: float = 0.0
    last_renew: float | None = None
    gaps: list[float] = field(default_factory=list)

    def record(self, now: float) -> None:
        if self.last_renew is not None:
            gap = now - self.last_renew
            self.max_gap = max(self.max_gap, gap)
            self.total_gap += gap
            self.gaps.append(gap)
            if len(self.gaps) > 4096:  # bounded memory on long runs; max_gap stays exact
                del self.gaps[: len(self.gaps) - 4096]
        self.renewals += 1
        self.last_renew = now

    def interrupt(self) -> None:
        """The node went down on purpose: the next gap is not a lag."""
        self.last_renew = None


@dataclass(slots=True)
class SimNode:
    spec: NodeSpec
    index: int
    powered: bool = True
    kubelet_reachable: bool = True
    """False while partitioned: the VM runs, but nothing it sends reaches the API server."""
    boot_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    uid: str = ""
    ready_since: str = field(default_factory=timestamp)
    last_status_report: float = 0.0
    status_dirty: bool = True
    booted: asyncio.Event = field(default_factory=asyncio.Event)
    stats: HeartbeatStats = field(default_factory=HeartbeatStats)
    address: str = ""
    """Current InternalIP; starts as the spec's, changed by `lab change-ip`."""

    def __post_init__(self) -> None:
        self.address = self.address or self.spec.address

    @property
    def active(self) -> bool:
        """Whether this node's kubelet can act on the cluster right now."""
        return self.powered and self.kubelet_reachable


BootHook = Callable[[SimNode], Awaitable[None]]


class Fleet:
    def __init__(
        self,
        client: lightkube.AsyncClient,
        nodes: tuple[NodeSpec, ...],
        profile: TimingProfile,
        kubelet_version: str,
    ) -> None:
        self.client = client
        self.profile = profile
        self.version = kubelet_version
        self.nodes = {spec.name: SimNode(spec, i) for i, spec in enumerate(nodes)}
        self._boot_hooks: list[BootHook] = []
        self._status_extras: list[Callable[[SimNode], dict[str, object]]] = []
        self._node_listeners: list[Callable[[Node], None]] = []
        self._power_off_hooks: list[Callable[[SimNode], None]] = []
        self._reconnect_hooks: list[Callable[[SimNode], None]] = []
        self._disconnect_hooks: list[Callable[[SimNode], None]] = []
        self.api_nodes: dict[str, Node] = {}
        """Latest Node objects as the API server has them (from one watch)."""

    def on_boot(self, hook: BootHook) -> None:
        """Run ``hook`` after a node's kubelet (re)registers, e.g. to clean up its pods."""
        self._boot_hooks.append(hook)

    def on_power_off(self, hook: Callable[[SimNode], None]) -> None:
        self._power_off_hooks.append(hook)

    def on_reconnect(self, hook: Callable[[SimNode], None]) -> None:
        """Run ``hook`` when a partitioned node's kubelet reaches the API server again."""
        self._reconnect_hooks.append(hook)

    def on_disconnect(self, hook: Callable[[SimNode], None]) -> None:
        """Run ``hook`` when a node is partitioned (its VM keeps running)."""
        self._disconnect_hooks.append(hook)

    def on_node_update(self, listener: Callable[[Node], None]) -> None:
        """Call ``listener`` with every Node the API server reports (e.g. volumesAttached)."""
        self._node_listeners.append(listener)

    async def watch_nodes(self) -> None:
        await follow(self.client, Node, self._nodes_listed, self._node_changed, what="node")

    async def _nodes_listed(self, nodes: list[Node]) -> None:
        names = {n.metadata.name for n in nodes if n.metadata}
        for gone in set(self.api_nodes) - names:
            self.api_nodes.pop(gone, None)
        for node in nodes:
            await self._node_changed("MODIFIED", node)

    async def _node_changed(self, kind: str, node: Node) -> None:
        name = node.metadata.name if node.metadata else None
        if name is None:
            return
        if kind == "DELETED":
            self.api_nodes.pop(name, None)
            return
        self.api_nodes[name] = node
        for listener in self._node_listeners:
            listener(node)

    def status_extra(self, provider: Callable[[SimNode], dict[str, object]]) -> None:
        """Let another simulator add fields (volumesInUse, volumesAttached) to node status."""
        self._status_extras.append(provider)

    # -- events -----------------------------------------------------------------------------

    async def emit(
        self,
        involved: dict[str, str],
        reason: str,
        message: str,
        *,
        warning: bool = False,
        host: str | None = None,
    ) -> None:
        manifest = event_manifest(
            involved=involved,
            reason=reason,
            message=message,
            event_type="Warning" if warning else "Normal",
            host=host,
        )
        try:
            with translate_errors():
                await self.client.create(cast(Event, Event.from_dict(manifest)))
        except (KubeApiError, KubeUnreachableError) as exc:
            log.debug("event %s not recorded: %s", reason, exc)

    def _node_ref(self, node: SimNode) -> dict[str, str]:
        return {"kind": "Node", "name": node.spec.name, "uid": node.spec.name, "apiVersion": "v1"}

    # -- registration and status --------------------------------------------------------------

    async def register(self, node: SimNode) -> None:
        """Create or refresh the Node and its Lease, as a starting kubelet does."""
        with translate_errors():
            try:
                created = await self.client.create(
                    cast(Node, Node.from_dict(node_manifest(node.spec, node.index)))
                )
                node.uid = str(created.metadata.uid) if created.metadata else ""
            except lightkube.ApiError as exc:
                if exc.status.code != 409:
                    raise
                existing = await self.client.get(Node, node.spec.name)
                node.uid = str(existing.metadata.uid) if existing.metadata else ""
            node.ready_since = timestamp()
            await self.post_status(node)
            try:
                lease = lease_manifest(
                    node.spec.name, node.uid, self.profile.lease_duration_seconds
                )
                await self.client.create(cast(Lease, Lease.from_dict(lease)))
            except lightkube.ApiError as exc:
                if exc.status.code != 409:
                    raise
                await self._renew(node)
        node.booted.set()

    async def post_status(self, node: SimNode) -> None:
        status = node_status(
            node.spec,
            version=self.version,
            boot_id=node.boot_id,
            ready_since=node.ready_since,
            address=node.address,
        )
        for extra in self._status_extras:
            status.update(extra(node))
        with translate_errors():
            await self.client.patch(Node.Status, node.spec.name, {"status": status})
        node.last_status_report = time.monotonic()
        node.status_dirty = False

    async def _renew(self, node: SimNode) -> None:
        with translate_errors():
            await self.client.patch(
                Lease,
                node.spec.name,
                {"spec": {"renewTime": micro_timestamp(), "holderIdentity": node.spec.name}},
                namespace="kube-node-lease",
                patch_type=lightkube.types.PatchType.MERGE,
            )

    async def _heartbeat_loop(self, node: SimNode, offset: float) -> None:
        loop = asyncio.get_running_loop()
        interval = self.profile.lease_renew_seconds
        next_at = loop.time() + offset
        while True:
            next_at = max(next_at + interval, loop.time())
            await asyncio.sleep(next_at - loop.time())
            if not node.active or not node.booted.is_set():
                continue
            try:
                await self._renew(node)
                node.stats.record(time.monotonic())
            except (KubeApiError, KubeUnreachableError) as exc:
                node.stats.failures += 1
                if isinstance(exc, KubeNotFoundError):
                    node.booted.clear()  # Lease or Node deleted: re-register like a kubelet
                    asyncio.get_running_loop().create_task(self._reregister(node))
                log.warning("%s: lease renewal failed: %s", node.spec.name, exc)

    async def _reregister(self, node: SimNode) -> None:
        with contextlib.suppress(KubeApiError, KubeUnreachableError):
            await self.register(node)

    async def _status_loop(self, node: SimNode, offset: float) -> None:
        await asyncio.sleep(offset)
        while True:
            await asyncio.sleep(self.profile.status_check_seconds)
            if not node.active or not node.booted.is_set():
                continue
            due = time.monotonic() - node.last_status_report >= self.profile.status_report_seconds
            if not (due or node.status_dirty or await self._status_overwritten(node)):
                continue
            try:
                await self.post_status(node)
            except (KubeApiError, KubeUnreachableError) as exc:
                log.warning("%s: status update failed: %s", node.spec.name, exc)

    async def _status_overwritten(self, node: SimNode) -> bool:
        """True when the node lifecycle controller marked us Unknown (after a partition)."""
        current = self.api_nodes.get(node.spec.name)
        if current is None:
            return False
        conditions = (current.status.conditions if current.status else None) or []
        ready = next((c for c in conditions if c.type == "Ready"), None)
        return ready is None or ready.status != "True"

    # -- power ------------------------------------------------------------------------------

    def power_off(self, name: str) -> None:
        node = self.nodes[name]
        node.powered = False
        node.booted.clear()
        node.stats.interrupt()
        for hook in self._power_off_hooks:
            hook(node)
        log.info("%s: powered off", name)

    async def power_on(self, name: str) -> None:
        node = self.nodes[name]
        if node.powered:
            return
        node.powered = True
        node.boot_id = str(uuid.uuid4())
        asyncio.get_running_loop().create_task(self._boot(node))

    def set_reachable(self, name: str, reachable: bool) -> None:
        """Partition (False) or reconnect (True) a node whose VM keeps running."""
        node = self.nodes[name]
        was = node.kubelet_reachable
        node.kubelet_reachable = reachable
        if not reachable:
            node.stats.interrupt()
            if was:
                for cut in self._disconnect_hooks:
                    cut(node)
        else:
            node.status_dirty = True
            if not was:
                for hook in self._reconnect_hooks:
                    hook(node)
        log.info("%s: %s", name, "reconnected" if reachable else "partitioned")

    def set_address(self, name: str, address: str) -> None:
        """The VM got a new address (DHCP, re-IP): the kubelet reports it with its next status."""
        node = self.nodes[name]
        node.address = address
        node.status_dirty = True
        log.info("%s: address is now %s", name, address)

    async def _boot(self, node: SimNode) -> None:
        boot = node.boot_id
        log.info("%s: booting (boot id %s)", node.spec.name, boot)
        await asyncio.sleep(self.profile.pod_start_seconds)
        # A reboot does not repair the network: a partitioned kubelet stays silent until the
        # partition ends, however often its VM restarts.
        while node.powered and not node.kubelet_reachable:  # noqa: ASYNC110 - plain flags
            await asyncio.sleep(0.2)
        # A kubelet retries its registration for as long as it runs: a VM that boots during an
        # API outage registers when the API server is back, however long that takes.
        attempt = 0
        while True:
            if not node.powered or node.boot_id != boot:
                return  # off again, or a newer boot took over
            try:
                await self.register(node)
                break
            except (KubeApiError, KubeUnreachableError) as exc:
                attempt += 1
                log.warning("%s: registration failed (%s), retry %d", node.spec.name, exc, attempt)
                await asyncio.sleep(min(0.5 * attempt, 5.0))
        await self.emit(
            self._node_ref(node),
            "Rebooted",
            f"Node {node.spec.name} has been rebooted, boot id: {node.boot_id}",
            warning=True,
            host=node.spec.name,
        )
        await self.emit(
            self._node_ref(node),
            "NodeReady",
            f"Node {node.spec.name} status is now: NodeReady",
            host=node.spec.name,
        )
        for hook in self._boot_hooks:
            await hook(node)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(
        self, progress: Callable[[str], None] = lambda _m: None
    ) -> list[asyncio.Task[None]]:
        # Register in small concurrent batches: fast, without a thundering herd on the API server.
        sem = asyncio.Semaphore(10)

        async def one(node: SimNode) -> None:
            async with sem:
                for attempt in range(60):
                    try:
                        await self.register(node)
                        return
                    except (KubeApiError, KubeUnreachableError) as exc:
                        log.warning("%s: registration failed (%s)", node.spec.name, exc)
                        await asyncio.sleep(min(0.2 * (attempt + 1), 2))
                raise RuntimeError(f"{node.spec.name}: could not register")

        await asyncio.gather(*(one(n) for n in self.nodes.values()))
        progress(f"registered {len(self.nodes)} nodes")
        count = max(len(self.nodes), 1)
        tasks = [asyncio.create_task(self.watch_nodes())]
        for i, node in enumerate(self.nodes.values()):
            # Stagger heartbeats evenly across the interval instead of firing them all at once.
            offset = self.profile.lease_renew_seconds * i / count
            tasks.append(asyncio.create_task(self._heartbeat_loop(node, offset)))
            status_offset = self.profile.status_check_seconds * i / count
            tasks.append(asyncio.create_task(self._status_loop(node, status_offset)))
        return tasks

    def heartbeat_report(self) -> dict[str, object]:
        gaps = sorted(g for n in self.nodes.values() for g in n.stats.gaps)
        interval = self.profile.lease_renew_seconds

        def pct(p: float) -> float:
            return gaps[min(len(gaps) - 1, int(p * len(gaps)))] if gaps else 0.0

        return {
            "nodes": len(self.nodes),
            "interval_seconds": interval,
            "renewals": sum(n.stats.renewals for n in self.nodes.values()),
            "failures": sum(n.stats.failures for n in self.nodes.values()),
            "lag_p50_seconds": round(max(0.0, pct(0.5) - interval), 4),
            "lag_p99_seconds": round(max(0.0, pct(0.99) - interval), 4),
            "lag_max_seconds": round(max(0.0, (gaps[-1] if gaps else 0.0) - interval), 4),
            "grace_seconds": self.profile.node_monitor_grace_period_seconds,
        }
