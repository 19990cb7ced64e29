"""Which nodes look dead, and why: pure decisions over one observation of the cluster.

Three signals, strongest first:
1. the hypervisor reads the VM off (the fast path: seconds, whatever Ready still says);
2. the node Lease is stale while the VM runs or cannot be read (a partition, a hung node, a
   dead host): fence it, which verifies it off or fails closed;
3. Ready is not True past a grace period, for nodes no device poll covers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fireproof.config import GuardConfig
from fireproof.fencing import Machine, PowerState
from fireproof.guard.record import Reason, Remediation


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


def suspicion(view: NodeView, settings: GuardConfig, now: dt.datetime) -> Reason | None:
    """Why the node looks dead, or None when it looks alive."""
    if view.power is PowerState.OFF:
        return Reason.VM_OFF
    renewed = view.lease_renewed
    if renewed is None or (now - renewed).total_seconds() > settings.lease_stale_seconds:
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


def healthy(view: NodeView, settings: GuardConfig, now: dt.datetime) -> bool:
    """Back by itself: Ready, its Lease fresh, and its machine not read as off."""
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
