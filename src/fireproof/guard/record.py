"""A remediation's progress, recorded on the Node itself (one annotation) so that any guard
replica, a restarted one or a new leader, resumes it from the recorded phase, exactly once."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, replace
from typing import Any, TypedDict, Unpack

ANNOTATION = "fireproof.io/remediation"
EXCLUDE_LABEL = "fireproof.io/exclude"
PAUSE_ANNOTATION = "fireproof.io/pause"
"""On a Node: guard leaves it alone (maintenance). On guard's Lease: guard pauses everywhere."""


class Phase(enum.StrEnum):
    DETECTED = "detected"
    CORDONED = "cordoned"
    FENCED = "fenced"
    """The device read the machine back as off: only from here may volumes be released."""
    RELEASED = "released"
    REBOOTING = "rebooting"
    LEFT_OFF = "left-off"
    """Released and left off (strategy off, or a machine guard did not stop)."""
    GAVE_UP = "gave-up"
    """Did not come back Ready after max_attempts reboots: left off and tainted."""


ACTIVE_PHASES = frozenset(
    {Phase.DETECTED, Phase.CORDONED, Phase.FENCED, Phase.RELEASED, Phase.REBOOTING}
)
"""A remediation still under way (left-off and gave-up wait for a person)."""


class Reason(enum.StrEnum):
    VM_OFF = "vm-off"
    """The hypervisor reads the VM stopped: dead whatever Ready still says (fast path)."""
    SILENT = "silent-kubelet"
    """The node Lease is stale while the VM runs: a partition or a hung node."""
    NOT_READY = "not-ready"
    """Ready is not True past the grace period (a device that cannot report power)."""
    HOST_DOWN = "host-down"
    """The hypervisor's cluster lost the node's host: its VMs' last status is stale, and only
    the host's own device (its BMC) can prove them off."""


class Changes(TypedDict, total=False):
    """What a step may change in a record besides its phase, leader and time: each named and
    typed (no free-form keyword reaches the record)."""

    guard_powered_off: bool
    attempts: int
    not_before: float
    failures: int
    note: str
    host_fenced: str
    ha_fenced: bool
    release_begun: bool


@dataclass(frozen=True, slots=True)
class Remediation:
    phase: Phase
    reason: Reason
    epoch: int
    """The leader epoch (Lease transitions) that wrote this record."""
    leader: str
    started: float
    """Wall-clock seconds since the epoch when the failure was detected."""
    updated: float
    guard_powered_off: bool = False
    """guard itself stopped the machine (partition): only then does strategy reboot start it."""
    attempts: int = 0
    not_before: float = 0.0
    """Wall-clock time before which the next try waits (backoff after a failure)."""
    failures: int = 0
    note: str = ""
    host_fenced: str = ""
    """The host whose own device (BMC) fenced the node: power on, re-fence and the release's
    last check go through that device, not the VM's."""
    ha_fenced: bool = False
    """``host_fenced`` was proven by Proxmox HA's acknowledged fence, not by a device: there is
    no device to power the host on or read it back; the release's check asks HA."""
    release_begun: bool = False
    """A release began and stopped before it ended (the machine was started again): some of it,
    the out-of-service taint too, may be on the node. A node that comes back from here gets the
    taint removed, not only the cordon."""

    def to_annotation(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_annotation(cls, text: str | None) -> Remediation | None:
        if not text:
            return None
        try:
            raw: dict[str, Any] = json.loads(text)
            return cls(
                phase=Phase(raw["phase"]),
                reason=Reason(raw["reason"]),
                epoch=int(raw["epoch"]),
                leader=str(raw["leader"]),
                started=float(raw["started"]),
                updated=float(raw["updated"]),
                guard_powered_off=bool(raw.get("guard_powered_off", False)),
                attempts=int(raw.get("attempts", 0)),
                not_before=float(raw.get("not_before", 0.0)),
                failures=int(raw.get("failures", 0)),
                note=str(raw.get("note", "")),
                host_fenced=str(raw.get("host_fenced", "")),
                ha_fenced=bool(raw.get("ha_fenced", False)),
                release_begun=bool(raw.get("release_begun", False)),
            )
        except (ValueError, KeyError, TypeError):
            return None  # a hand-edited or foreign value: treated as no record, never trusted

    def advance(
        self, phase: Phase, *, epoch: int, leader: str, now: float, **changes: Unpack[Changes]
    ) -> Remediation:
        """The record after a step; the transition table decides whether it may be taken."""
        from fireproof.guard.transitions import check  # the table imports Phase from here

        check(self.phase, phase)
        return replace(self, phase=phase, epoch=epoch, leader=leader, updated=now, **changes)
