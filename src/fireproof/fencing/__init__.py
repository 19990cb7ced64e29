"""Fencing: power a machine off (or on) through its hypervisor or BMC, and verify it.

Every driver implements :class:`~fireproof.fencing.base.Fencer`; drivers are created from the
explicit :data:`~fireproof.fencing.registry.DRIVERS` registry, never discovered.
"""

from fireproof.fencing.base import (
    Fencer,
    FencingError,
    FencingTimeout,
    HaReader,
    HaStatus,
    Identifier,
    Machine,
    MachineIdentity,
    PermanentFencingError,
    PowerPoll,
    PowerPoller,
    PowerState,
    SettledReader,
    TransientFencingError,
    wait_for_state,
)
from fireproof.fencing.registry import DRIVERS, build_fencer

__all__ = [
    "DRIVERS",
    "Fencer",
    "FencingError",
    "FencingTimeout",
    "HaReader",
    "HaStatus",
    "Identifier",
    "Machine",
    "MachineIdentity",
    "PermanentFencingError",
    "PowerPoll",
    "PowerPoller",
    "PowerState",
    "SettledReader",
    "TransientFencingError",
    "build_fencer",
    "wait_for_state",
]
