"""One look at the cluster, frozen: the watch cache of Nodes, node Leases and VolumeAttachments,
the inventory, and one power poll per hypervisor device.

:class:`Observer` does the looking (no API request for the cluster's own objects: the cache
watches them). :func:`observe` folds one look and what guard remembers between looks
(:class:`Windows`: how long each node has looked dead, the storm cooldown, the hold after an
outage) into an :class:`Observation`, the only input of :func:`fireproof.guard.policy.decide`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from fireproof.clock import Clock
from fireproof.config import GuardConfig
from fireproof.errors import FireproofError, TransientError
from fireproof.fencing import (
    Fencer,
    HaReader,
    Machine,
    PowerPoll,
    PowerPoller,
    PowerState,
    SettledReader,
)
from fireproof.guard.detect import HA_FENCED, HA_NONE, HA_PENDING, NodeView, suspicion
from fireproof.guard.metrics import GuardMetrics
from fireproof.guard.notices import Notices
from fireproof.guard.record import ANNOTATION, EXCLUDE_LABEL, PAUSE_ANNOTATION, Reason, Remediation
from fireproof.guard.topology import owned_after, topology_patch
from fireproof.inventory import Inventory, InventoryError
from fireproof.kube.cache import CacheView, NodeFacts

log = logging.getLogger("fireproof.guard")
INVENTORY_TTL = 30.0
HOST_READ_BACKOFF = 30.0
"""Seconds before a lost host's device that failed a read is asked again by the look."""
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


class ClusterUnseen(TransientError):
    """guard cannot see the cluster now (the watches are lost or not yet listed)."""


class ClusterSource(Protocol):
    def view(self) -> CacheView: ...


@dataclass(frozen=True, slots=True)
class Windows:
    """What guard remembers from one look to the next, on the monotonic clock."""

    suspected_since: Mapping[str, float] = field(default_factory=dict)
    """Since when each node has looked dead without a break."""
    storm_until: float = 0.0
    """The storm gate holds until then (the cooldown after the last storm look)."""
    hold_until: float = 0.0
    """After guard could not see the cluster: no remediation from a stale Lease until then."""
    blind: bool = True
    """guard has not seen the cluster lately (or ever, at start: it cannot tell whether an
    outage just ended)."""


@dataclass(frozen=True, slots=True)
class Observation:
    at: float
    """Monotonic time of the look."""
    wall: float
    """Wall-clock time of the look (records are stamped with it)."""
    nodes: Mapping[str, NodeView]
    suspects: Mapping[str, Reason]
    suspected_since: Mapping[str, float]
    storm: bool
    hold_until: float
    storm_limit: int = 0
    domains: int = 0
    """Failure domains among the suspects (a dead host's nodes are one)."""

    @property
    def utc(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.wall, dt.UTC)


def lost_sight(windows: Windows) -> Windows:
    return replace(windows, blind=True)


def observe(
    views: list[NodeView], windows: Windows, settings: GuardConfig, at: float, wall: float
) -> tuple[Observation, Windows]:
    """Suspects, their confirm windows, the storm gate and the post-outage hold, from one look.

    Pure: the same views, memory and times give the same observation."""
    utc = dt.datetime.fromtimestamp(wall, dt.UTC)
    suspects = {
        v.name: reason
        for v in views
        if not v.excluded and (reason := suspicion(v, settings, utc)) is not None
    }
    since = {name: windows.suspected_since.get(name, at) for name in suspects}
    limit = settings.max_unhealthy_nodes(len(views))
    storm_until = windows.storm_until
    # Failure domains, not nodes: the nodes of one dead host died of one cause, together.
    domains = {v.domain for v in views if v.name in suspects}
    if len(domains) > limit:
        storm_until = at + settings.storm_cooldown_seconds
    hold_until = windows.hold_until
    if windows.blind:
        # The kubelets could not renew their Leases while guard could not see the cluster
        # either: every Lease looks stale for a while. Only the hypervisor's word counts until
        # each kubelet had a full staleness period to renew.
        hold_until = at + settings.lease_stale_seconds
    memory = Windows(since, storm_until, hold_until, blind=False)
    observation = Observation(
        at=at,
        wall=wall,
        nodes={v.name: v for v in views},
        suspects=suspects,
        suspected_since=since,
        storm=at < storm_until,
        hold_until=hold_until,
        storm_limit=limit,
        domains=len(domains),
    )
    return observation, memory


@dataclass
class Observer:
    """Builds each look's node views from the watch cache, the inventory and the devices."""

    source: ClusterSource
    inventory: Callable[[list[str]], Inventory]
    fencer: Callable[[str], Fencer]
    metrics: GuardMetrics
    clock: Clock
    notices: Notices
    confirm_seconds: float = 2.0
    host_devices: Mapping[str, str] = field(default_factory=dict)
    """Proxmox host -> the device that fences the host itself (its BMC)."""
    _inventory: Inventory | None = field(default=None, init=False)
    _inventory_at: float = field(default=0.0, init=False)
    _ha_fence_seen: dict[str, float] = field(default_factory=dict, init=False)
    """Lost host -> when this observer first saw Proxmox HA fencing it (monotonic)."""
    _host_read_failed: dict[str, float] = field(default_factory=dict, init=False)
    """Lost host -> when reading its own device last failed (monotonic)."""
    _regions: dict[str, str | None] = field(default_factory=dict, init=False)
    """Device -> its Proxmox cluster's name, read with each inventory refresh."""

    def look(self, suspected_since: Mapping[str, float] | None = None) -> list[NodeView]:
        """The node views of one look. ``suspected_since`` (from the last look) spares the
        device's settle question for VMs off longer than the confirm window: it would change
        nothing for them, and a long storm would ask it of every VM on every poll."""
        cache = self.source.view()
        if not cache.synced:
            raise ClusterUnseen("the watches of Nodes, node Leases and VolumeAttachments are lost")
        names = sorted(cache.nodes)
        inventory = self._inventory_for(names)
        unrecorded = {n for n in names if ANNOTATION not in cache.nodes[n].annotations}
        power = self._poll(inventory, names, unrecorded)
        attached: dict[str, int] = {}
        for va in cache.attachments:
            if va.attached:
                attached[va.node] = attached.get(va.node, 0) + 1
        since = suspected_since or {}
        return [
            self._view(
                cache.nodes[name],
                _mapping(inventory, name),
                power.get(name, _UNPOLLED),
                cache.lease_renewals.get(name),
                attached.get(name, 0),
                since.get(name),
            )
            for name in names
        ]

    def _view(
        self,
        facts: NodeFacts,
        mapping: tuple[Machine | None, str | None, str],
        poll: NodePoll,
        lease_renewed: dt.datetime | None,
        attached: int,
        suspected_since: float | None,
    ) -> NodeView:
        name = facts.name
        machine, problem, source = mapping
        if machine is not None and poll.host and poll.host != machine.host:
            # The VM moved (HA recovery, migration): fence, labels and failure domain follow it.
            machine = replace(machine, host=poll.host)
        now = self.clock.monotonic()
        record = Remediation.from_annotation(facts.annotations.get(ANNOTATION))
        settled = (
            poll.state is PowerState.OFF
            and record is None
            and machine is not None
            and now - (suspected_since if suspected_since is not None else now)
            < self.confirm_seconds
            and EXCLUDE_LABEL not in facts.labels
            and PAUSE_ANNOTATION not in facts.annotations
            and self._settled_off(machine)
        )
        relabel = topology_patch(
            facts.labels,
            facts.annotations,
            machine.host if machine else None,
            self._regions.get(machine.device) if machine else None,
            ready=facts.ready == "True",
        )
        return NodeView(
            name=name,
            ready=facts.ready,
            ready_since=facts.ready_since,
            lease_renewed=lease_renewed,
            power=poll.state,
            polled=poll.polled,
            control_plane=CONTROL_PLANE_LABEL in facts.labels,
            excluded=EXCLUDE_LABEL in facts.labels,
            paused=PAUSE_ANNOTATION in facts.annotations,
            record=record,
            machine=machine,
            inventory_problem=problem,
            inventory_source=source,
            system_uuid=facts.system_uuid,
            attached_volumes=attached,
            settled_off=settled,
            host_down=poll.host_down,
            host_off=poll.host_down and poll.host_off,
            host_ha=poll.host_ha if poll.host_down else HA_NONE,
            host_machine=self._host_machine(name, machine.host if machine else None),
            vm_uptime=poll.uptime,
            relabel=relabel,
            relabel_owned=owned_after(facts.annotations, relabel),
        )

    def _host_machine(self, node: str, host: str | None) -> Machine | None:
        device = self.host_devices.get(host) if host else None
        return Machine(node=node, device=device, host=host) if device else None

    def _settled_off(self, machine: Machine) -> bool:
        """Asked only of a VM the poll read off and not yet remediated: two calls, once."""
        try:
            fencer = self.fencer(machine.device)
        except FireproofError:
            return False
        return isinstance(fencer, SettledReader) and fencer.settled_off(machine) is True

    def _inventory_for(self, names: list[str]) -> Inventory:
        now = self.clock.monotonic()
        fresh = now - self._inventory_at < INVENTORY_TTL
        if self._inventory is not None and fresh and set(names) <= set(self._inventory.entries):
            return self._inventory
        try:
            self._inventory = self.inventory(names)
            self._inventory_at = now
            self._read_regions(self._inventory)
        except FireproofError as exc:
            if self._inventory is None:
                raise
            log.warning("inventory not refreshed, using the last one: %s", exc.message)
        return self._inventory

    def _read_regions(self, inventory: Inventory) -> None:
        """Each device's Proxmox cluster name (the region label), when the device tells it."""
        devices = {e.machine.device for e in inventory.entries.values() if e.machine}
        for device in devices:
            try:
                reader = getattr(self.fencer(device), "cluster_facts", None)
                self._regions[device] = reader().name if callable(reader) else None
            except FireproofError as exc:
                self.notices.once(device, "region", log.info, f"no region label: {exc.message}")

    def _poll(
        self, inventory: Inventory, names: list[str], unrecorded: set[str]
    ) -> dict[str, NodePoll]:
        """node -> what the poll says of it: one poll per device that can read all its machines."""
        out: dict[str, NodePoll] = {}
        by_device: dict[str, list[tuple[str, Machine]]] = {}
        for name in names:
            entry = inventory.entry(name)
            if entry is None or entry.machine is None or entry.problem:
                continue
            by_device.setdefault(entry.machine.device, []).append((name, entry.machine))
        for device, members in by_device.items():
            polled = self._poll_device(device)
            if polled is None:
                continue  # cannot poll: the conditions signal covers these nodes
            # Where each VM runs now, as its cluster lists it: an HA recovery or a migration
            # moves it off the host the inventory names, and a host's death is then not its.
            members = [(n, polled.locate(m)) for n, m in members]
            undetected = [(n, m) for n, m in members if n in unrecorded]
            hosts_off = self._hosts_read_off(polled.offline_hosts, undetected)
            lost = {m.host for _n, m in members if m.host in polled.offline_hosts and m.host}
            ha = self._ha_states(device, lost)
            for name, machine in members:
                vmid = machine.vmid if machine.vmid is not None else -1
                out[name] = NodePoll(
                    polled.vms.get(vmid, PowerState.UNKNOWN),
                    True,
                    machine.host in polled.offline_hosts,
                    polled.uptimes.get(vmid),
                    host_off=machine.host in hosts_off,
                    host=machine.host,
                    host_ha=ha.get(machine.host or "", HA_NONE),
                )
        return out

    def _ha_states(self, device: str, lost: set[str]) -> dict[str, str]:
        """Each lost host's Proxmox HA state: ``fenced`` once HA acknowledged its fence (this
        observer saw the host in ``fence``, and HA moved it on to ``unknown``: only taking the
        dead node's agent lock does that), ``pending`` while HA will fence it, else none.
        Asked only while a host is lost; a guard that missed the ``fence`` state (started after
        it) cannot take HA's word, and says the host is unfenceable."""
        for host in [h for h in self._ha_fence_seen if h not in lost]:
            del self._ha_fence_seen[host]  # back online: a later loss starts afresh
        if not lost:
            return {}
        try:
            reader = self.fencer(device)
            status = reader.ha_status() if isinstance(reader, HaReader) else None
        except FireproofError as exc:
            self.notices.once(device, "ha", log.warning, f"cannot read Proxmox HA: {exc.message}")
            return {}
        self.notices.clear(device, "ha")
        if status is None:
            return {}
        out: dict[str, str] = {}
        for host in lost:
            state = status.node_status.get(host)
            if state == "fence":
                self._ha_fence_seen.setdefault(host, self.clock.monotonic())
            if status.quorate and state == "unknown" and host in self._ha_fence_seen:
                out[host] = HA_FENCED
            elif status.fencing(host):
                out[host] = HA_PENDING
        return out

    def _hosts_read_off(
        self, offline: frozenset[str], members: list[tuple[str, Machine]]
    ) -> set[str]:
        """The lost hosts whose own device (their BMC) reads them off: a power cut, proven at
        once, so their nodes need not wait for a missed Lease renewal.

        Asked only of a host the cluster reads offline with a node not yet detected (once
        detected, the remediation reads the host itself), once per look. A device that failed
        is left alone for a while: a BMC that does not answer would hold every look for its
        timeout. Any error is "not known off": the Lease signal still applies."""
        off: set[str] = set()
        now = self.clock.monotonic()
        for host in sorted({m.host for _n, m in members if m.host in offline and m.host}):
            device = self.host_devices.get(host)
            if device is None or now - self._host_read_failed.get(host, -HOST_READ_BACKOFF) < (
                HOST_READ_BACKOFF
            ):
                continue
            try:
                state = self.fencer(device).status(Machine(node=host, device=device, host=host))
            except FireproofError as exc:
                self._host_read_failed[host] = self.clock.monotonic()
                self.notices.once(host, "host-read", log.warning, f"host {host}: {exc.message}")
                continue
            self._host_read_failed.pop(host, None)
            self.notices.clear(host, "host-read")
            if state is PowerState.OFF:
                off.add(host)
        return off

    def _poll_device(self, device: str) -> PowerPoll | None:
        try:
            fencer = self.fencer(device)
        except FireproofError as exc:
            self.notices.once(device, "fencer", log.error, f"device {device!r}: {exc.message}")
            return None
        if not isinstance(fencer, PowerPoller):
            return None
        started = self.clock.monotonic()
        try:
            states = fencer.power_states()
        except FireproofError as exc:
            self.metrics.poll_errors.labels(device).inc()
            message = f"cannot poll device {device!r}: {exc.message}"
            self.notices.once(device, "poll", log.warning, message)
            states = PowerPoll({})
        else:
            self.notices.clear(device, "poll")
        self.metrics.poll_seconds.labels(device).observe(self.clock.monotonic() - started)
        return states


@dataclass(frozen=True, slots=True)
class NodePoll:
    state: PowerState
    polled: bool
    host_down: bool = False
    uptime: int | None = None
    host_off: bool = False
    """The lost host's own device reads it off."""
    host: str | None = None
    """The host the VM runs on now (the poll's), else the inventory's."""
    host_ha: str = "none"
    """Proxmox HA on the lost host: ``none``, ``pending`` (it will fence it), ``fenced``."""


_UNPOLLED = NodePoll(PowerState.UNKNOWN, False)


def _mapping(inventory: Inventory, name: str) -> tuple[Machine | None, str | None, str]:
    entry = inventory.entry(name)
    source = entry.source if entry else "none"
    try:
        return inventory.machine(name), None, source
    except InventoryError as exc:
        return None, exc.message, source
