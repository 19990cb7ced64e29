"""Which nodes look dead, and why: pure decisions over one observation of the cluster.

Three signals, strongest first:
1. the hypervisor reads the VM off (the fast path: seconds, whatever Ready still says);
2. the node Lease is stale while the VM runs or cannot be read (a partition, a hung node, a
   dead host): fence it, which verifies it off or fails closed;
3. Ready is not True past a grace period, for nodes no device poll covers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from fireproof.config import GuardConfig
from fireproof.fencing import Machine, PowerState
from fireproof.guard.record import Reason, Remediation

HA_NONE, HA_PENDING, HA_FENCED = "none", "pending", "fenced"
"""Proxmox HA on a lost host: nothing, a fence under way, a fence it acknowledged."""


@dataclass(frozen=True, slots=True)
class NodeView:
    """What guard sees of one node in one look."""

    name: str
    ready: str
    """Ready condition status: True, False, Unknown."""
    ready_since: dt.datetime | None
    """lastTransitionTime of the Ready condition."""
    lease_renewed: dt.datetime | None
    power: PowerState
    """From the device's poll; UNKNOWN when it cannot report or did not answer."""
    polled: bool
    """Whether a device poll covers this node (False: only the conditions signal applies)."""
    control_plane: bool
    excluded: bool
    paused: bool
    record: Remediation | None = None
    """The remediation recorded on the Node, if any."""
    machine: Machine | None = None
    """What fences it, from the inventory (None: no device, or ``inventory_problem``)."""
    inventory_problem: str | None = None
    """Why the inventory cannot name its machine safely (ambiguous, mismatched)."""
    inventory_source: str = "none"
    system_uuid: str | None = None
    attached_volumes: int = 0
    """VolumeAttachments still attached to the node."""
    settled_off: bool = False
    """The device says the machine is off for good (no start, reboot or migration running):
    the poll's "off" needs no confirm window."""
    host_down: bool = False
    """The VM's host reads offline in its hypervisor's cluster (595 to every request)."""
    host_off: bool = False
    """The lost host's own device (its BMC) reads it off: every VM on it is dead, now."""
    host_ha: str = HA_NONE
    """Proxmox HA on the lost host: ``pending`` while it will fence it, ``fenced`` once it
    acknowledged the fence (got the dead node's agent lock: its watchdog reset it)."""
    host_machine: Machine | None = None
    """The host's own fencing device (``hosts:`` in fireproof.yaml), for this node."""
    vm_uptime: int | None = None
    """Seconds since the running VM started, from the poll (None: not running or unknown)."""
    relabel: Mapping[str, str] = field(default_factory=dict)
    """Topology labels to write (zone = Proxmox host, region = Proxmox cluster)."""
    relabel_owned: str = ""
    """The ownership annotation's value once ``relabel`` is written."""

    @property
    def domain(self) -> str:
        """The failure domain: the host when the host is down (its nodes die together),
        else the node itself."""
        host = self.machine.host if self.machine else None
        return f"host/{host}" if self.host_down and host else f"node/{self.name}"


def suspicion(view: NodeView, settings: GuardConfig, now: dt.datetime) -> Reason | None:
    """Why the node looks dead, or None when it looks alive."""
    renewed = view.lease_renewed
    age = None if renewed is None else (now - renewed).total_seconds()
    missed = min(settings.host_down_lease_seconds, settings.lease_stale_seconds)
    # A host read off by its BMC needs no Lease to age: nothing on it runs. A host only lost to
    # its cluster (595, offline) may be a corosync split: its kubelets must have missed a renewal.
    if view.host_down and (view.host_off or age is None or age > missed):
        return Reason.HOST_DOWN
    if view.power is PowerState.OFF:
        return Reason.VM_OFF
    if age is None or age > settings.lease_stale_seconds:
        if booting(view, settings, now):
            return None
        # Running or unknown: a partition, a hung node, or a host the device cannot read.
        # Fencing decides: it either verifies the machine off or fails closed, loudly.
        return Reason.SILENT
    grace = settings.not_ready_grace_seconds
    if (
        not view.polled
        and view.ready != "True"
        and view.ready_since is not None
        and (now - view.ready_since).total_seconds() > grace
    ):
        return Reason.NOT_READY
    return None


def booting(view: NodeView, settings: GuardConfig, now: dt.datetime) -> bool:
    """The VM started less than ``boot_grace_seconds`` ago and its kubelet has not renewed the
    Lease since: a boot (a host back, a node a person started), not a silence. Once the kubelet
    renewed after the start, a new silence counts again whatever the uptime."""
    uptime = view.vm_uptime
    if view.power is not PowerState.ON or uptime is None or uptime >= settings.boot_grace_seconds:
        return False
    started = now.timestamp() - uptime
    renewed = view.lease_renewed
    return renewed is None or renewed.timestamp() < started


def healthy(view: NodeView, settings: GuardConfig, now: dt.datetime) -> bool:
    """Back by itself: Ready, its Lease fresh, its machine not read as off, and its host not
    lost (a node of a dead host keeps Ready=True and a recent Lease for a while)."""
    if view.host_down:
        return False
    renewed = view.lease_renewed
    fresh = renewed is not None and (now - renewed).total_seconds() <= settings.lease_stale_seconds
    return view.ready == "True" and fresh and view.power is not PowerState.OFF


def back_since(view: NodeView, since: float) -> bool:
    """Really back after a remediation step taken at ``since`` (seconds since the epoch): Ready,
    and its kubelet renewed its Lease after that step. Ready alone is not enough: it stays True
    for the whole grace period after the machine went off, which is when the fast path acts."""
    renewed = view.lease_renewed
    return (
        view.ready == "True"
        and renewed is not None
        and renewed.timestamp() > since
        and view.power is not PowerState.OFF
    )


def quorum_allows_fencing(views: list[NodeView], node: NodeView) -> bool:
    """A control-plane node may be powered off only if the others Ready keep a quorum."""
    if not node.control_plane:
        return True
    members = [v for v in views if v.control_plane]
    ready_others = [v for v in members if v.name != node.name and v.ready == "True"]
    return len(ready_others) >= len(members) // 2 + 1
