"""The fencing contract shared by every driver.

It follows the ClusterLabs FenceAgentAPI: read the status; if not yet off, send off; poll the
status until it reads off. A timeout or an unreadable status is a failure, never a success:
callers release volumes only after :meth:`Fencer.off` returned.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from fireproof.clock import SYSTEM_CLOCK, Clock, poll_until
from fireproof.errors import FireproofError, PermanentError, TransientError


class PowerState(enum.StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Machine:
    """What fences a Kubernetes node: a device and the machine's name on that device."""

    node: str
    device: str
    host: str | None = None
    """Hypervisor host (Proxmox node) that runs the VM, when the device needs it."""
    vmid: int | None = None
    plug: str | None = None
    """The fence agent's ``plug`` (port) for non-Proxmox devices, e.g. a BMC outlet."""
    address: str | None = None

    @property
    def label(self) -> str:
        if self.vmid is not None:
            return f"VM {self.vmid}" + (f" on {self.host}" if self.host else "")
        if self.plug is None and self.host is not None:
            return f"host {self.host}"  # a host's own device (its BMC)
        return self.plug or self.node


@dataclass(frozen=True, slots=True)
class MachineIdentity:
    """What a device says about a machine, to prove it is the node's before fencing it."""

    name: str | None
    """The machine's name on the device (a Proxmox VM's name)."""
    uuid: str | None
    """The SMBIOS UUID (Proxmox ``smbios1: uuid=…``), lower case: what the node's kubelet
    reports as ``status.nodeInfo.systemUUID``."""
    template: bool = False


class FencingError(FireproofError):
    """The device could not be used or did not do what it was asked: nothing is verified."""


class TransientFencingError(FencingError, TransientError):
    """The device may answer on a later try: a timeout, a 5xx, an unreachable host."""


class PermanentFencingError(FencingError, PermanentError):
    """Retrying cannot help: refused credentials, missing privileges, no such VM."""


class FencingTimeout(TransientFencingError):
    """The device accepted the request but the machine did not reach the state in time."""


class Fencer(Protocol):
    """One fencing device. Methods are idempotent and raise :class:`FencingError`."""

    name: str

    def status(self, machine: Machine) -> PowerState: ...

    def off(self, machine: Machine) -> PowerState:
        """Power off and return only once the status reads off (else raise)."""
        ...

    def on(self, machine: Machine) -> PowerState:
        """Power on and return only once the status reads on (else raise)."""
        ...


@runtime_checkable
class Identifier(Protocol):
    """A device that can say which machine sits behind a mapping (name, SMBIOS UUID)."""

    def identify(self, machine: Machine) -> MachineIdentity: ...


def wait_for_state(
    read: Callable[[], PowerState],
    want: PowerState,
    *,
    timeout: float,
    interval: float,
    what: str,
    clock: Clock = SYSTEM_CLOCK,
) -> PowerState:
    """Poll ``read`` until it returns ``want``; a timeout raises :class:`FencingTimeout`."""
    last = [PowerState.UNKNOWN]

    def reached() -> PowerState | None:
        last[0] = read()
        return last[0] if last[0] is want else None

    if poll_until(reached, timeout=timeout, interval=interval, clock=clock) is None:
        raise FencingTimeout(
            f"{what}: still {last[0]} after {timeout:g} s",
            hint="the machine was NOT verified; nothing was released",
        )
    return want


@dataclass(frozen=True, slots=True)
class PowerPoll:
    """One poll of a hypervisor: every VM's power, and the hosts its cluster has lost."""

    vms: dict[int, PowerState]
    offline_hosts: frozenset[str] = frozenset()
    """Hosts the hypervisor's cluster reads offline: their VMs' last status is stale."""
    uptimes: dict[int, int] = field(default_factory=dict)
    """VMID -> seconds since the running VM started (a VM still booting is young)."""
    hosts: dict[int, str] = field(default_factory=dict)
    """VMID -> the host the cluster lists it on now: it moves with a migration or an HA
    recovery, whatever the inventory (a Terraform state) still says."""

    def locate(self, machine: Machine) -> Machine:
        """The machine on the host the cluster lists its VM on now (as it was, if unlisted)."""
        now = self.hosts.get(machine.vmid) if machine.vmid is not None else None
        return replace(machine, host=now) if now and now != machine.host else machine


@runtime_checkable
class PowerPoller(Protocol):
    """A device that reads the power of all its machines in one call (Proxmox:
    ``cluster/resources``). Detection only: before any release, :meth:`Fencer.off` verifies."""

    def power_states(self) -> PowerPoll:
        """VMID -> power state of every machine the device can see, and the offline hosts."""
        ...


@dataclass(frozen=True, slots=True)
class HaStatus:
    """Proxmox HA's manager, as it records itself (``/cluster/ha/status/manager_status``)."""

    quorate: bool
    node_status: dict[str, str]
    """Host -> ``online``, ``unknown``, ``fence``, ``gone`` (pve-ha-manager's NodeStatus.pm)."""
    services: dict[int, tuple[str, str]]
    """VMID -> (state, host) of each HA-managed VM (``started``, ``fence``, ``recovery``...)."""

    def fencing(self, host: str) -> bool:
        """HA will fence ``host``: quorate, the host lost, and an HA service of its to fence
        (a host whose LRM runs no HA service arms no watchdog and is never fenced)."""
        return (
            self.quorate
            and self.node_status.get(host) in ("unknown", "fence")
            and any(node == host for _state, node in self.services.values())
        )


@runtime_checkable
class HaReader(Protocol):
    """A device whose cluster fences lost hosts itself (Proxmox HA)."""

    def ha_status(self) -> HaStatus | None:
        """The HA manager's record; None when the cluster runs no HA."""
        ...


@runtime_checkable
class SettledReader(Protocol):
    """A device that can tell a machine that is off for good from one off for a moment (a
    reboot, a start or a migration under way): a poll's "off" then needs no confirm window."""

    def settled_off(self, machine: Machine) -> bool | None:
        """True: off, with no task running that starts, reboots or moves it. False: not so.
        None: cannot tell (the device did not answer)."""
        ...
