"""The emulated Proxmox cluster: hosts, VMs, HA resources, tasks and injected faults.

Pure state and rules; the HTTP layer (api.py) and the wiring to simulated kubelets (power
hooks) sit outside. Timings come from the lab profile so tests stay fast.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from fireproof.lab.proxmox.ha import HaManager
from fireproof.lab.proxmox.upid import Upid


class FaultKind(StrEnum):
    API_ERROR = "api-error"
    """Every API call answers 500 (pveproxy or pvedaemon broken)."""
    LATENCY = "latency"
    """Every API call is delayed by ``seconds``."""
    HANG = "hang"
    """API calls never answer (until the client gives up)."""
    AUTH_FAILURE = "auth-failure"
    """Every login and token is refused (401), as after a password or token rotation."""
    IGNORE_STOP = "ignore-stop"
    """The VM's stop and shutdown tasks end OK but the VM keeps running."""
    HANG_TASKS = "hang-tasks"
    """Power tasks never finish (status stays ``running``) and change nothing."""
    HOST_UNREACHABLE = "host-unreachable"
    """A whole Proxmox host is dead to its cluster: ``offline`` in the lists, requests proxied
    to it answer 595 (after ``seconds``), its VMs keep their last status for a while, then read
    ``unknown`` without a name (pmxcfs keeps a dead member's last state)."""
    LOCKED = "locked"
    """The VM carries a lock (``backup``): power tasks fail with "VM is locked (backup)"."""
    STOP_WARNINGS = "stop-warnings"
    """The guest ignores QEMU's quit: the stop task kills it and ends ``WARNINGS: 1``
    (qemu-server ``_do_vm_stop``: "VM still running - terminating now with SIGTERM")."""


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    host: str | None = None
    vmid: int | None = None
    seconds: float = 0.0
    since: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": str(self.kind),
            "host": self.host,
            "vmid": self.vmid,
            "seconds": self.seconds,
        }


@dataclass(slots=True)
class Vm:
    vmid: int
    name: str
    host: str
    running: bool = True
    ha_managed: bool = False
    started_at: float = field(default_factory=time.time)
    cpus: int = 4
    maxmem: int = 8 * 1024**3
    smbios_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    """``smbios1: uuid=…``: what the guest's firmware (and so its kubelet) reports."""
    template: bool = False
    power_cause: str = "created"
    """What made the last power change (for the lab's power history)."""

    @property
    def status(self) -> str:
        return "running" if self.running else "stopped"

    @property
    def uptime(self) -> int:
        return int(time.time() - self.started_at) if self.running else 0


@dataclass(slots=True)
class Task:
    upid: Upid
    done_at: float | None
    """Monotonic time at which the task ends; None: never (a hung task)."""
    exitstatus: str = "OK"
    """Set when the task ends: ``OK``, ``WARNINGS: N`` or the error that ended it."""
    on_done: Callable[[], None] | None = None
    finished: bool = False
    endtime: int = 0
    """Epoch seconds at which it ended (the task list's ``endtime``)."""

    def poll(self, now: float) -> None:
        if not self.finished and self.done_at is not None and now >= self.done_at:
            self.finished = True
            self.endtime = int(time.time())
            if self.on_done is not None:
                self.on_done()

    @property
    def status(self) -> str:
        return "stopped" if self.finished else "running"


class PveError(Exception):
    """An API error as Proxmox reports it: HTTP status, reason phrase, optional field errors."""

    def __init__(
        self,
        status: int,
        reason: str,
        errors: dict[str, str] | None = None,
        *,
        delay: float = 0.0,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors
        self.delay = delay
        """Seconds before the answer (a proxy waiting on a dead host's socket)."""


PowerHook = Callable[[Vm], None]
TaskHook = Callable[[Vm, str, str, str, bool], None]


@dataclass(frozen=True, slots=True)
class Timings:
    task_seconds: float
    """How long a stop/start task runs."""
    ha_stop_delay_seconds: float
    """How long after an HA stop task ends the VM really goes off."""
    dead_host_status_seconds: float = 300.0
    """How long a dead host's VMs keep their last status in the cluster lists."""


class Cluster:
    def __init__(
        self,
        hosts: list[str],
        vms: list[Vm],
        timings: Timings,
        *,
        name: str = "lab",
        qdevice: bool = False,
    ) -> None:
        self.hosts = hosts
        self.name = name
        """The cluster's name (``/cluster/status``): the CCM's region label."""
        self.qdevice = qdevice
        """A corosync QDevice (an external vote): a 2-host cluster keeps quorum with one host."""
        self.vms = {vm.vmid: vm for vm in vms}
        self.timings = timings
        self.tasks: dict[str, Task] = {}
        self.faults: list[Fault] = []
        self._pids = itertools.count(0x10000)
        self._pending: list[tuple[float, Callable[[], None]]] = []
        self.on_power_off: list[PowerHook] = []
        self.on_power_on: list[PowerHook] = []
        self.on_task: list[TaskHook] = []
        self.on_freeze: list[PowerHook] = []
        """Called for each VM of a host that hangs: its guest stops (the kubelet falls silent)
        while Proxmox, and the evidence, still count it running: nobody knows it is not."""
        """Called for every power task: (vm, upid, type, user, whether it will change power)."""
        self._host_cut: set[int] = set()
        """VMs a host power cut stopped, started again when the host comes back."""
        self.host_on: dict[str, bool] = dict.fromkeys(hosts, True)
        """Each host's chassis power, as its BMC reads it."""
        self.hung: set[str] = set()
        """Hosts that stopped answering with their power on (a kernel panic, a hung board)."""
        self.last_seen: dict[int, Vm] = {}
        """VMs of a lost host as the cluster last saw them: pmxcfs keeps a dead member's last
        state (a power cut's VMs still read ``running``), until it drops it."""
        self.ha: HaManager | None = None
        """Proxmox HA's manager, when the cluster runs HA-managed VMs."""

    # -- HA -----------------------------------------------------------------------------------

    def ha_self_fence(self, host: str) -> None:
        """HA acknowledged the host's fence: its watchdog reset it (or it was off already).
        Every VM on it is dead; the lab leaves the host off until `host-on`."""
        if self.host_on.get(host, False):
            self.host_power(host, False, cause=f"host {host} reset by its HA watchdog")

    def ha_recover(self, vmid: int, host: str) -> None:
        """HA starts a fenced node's service on a surviving host: the same VM, now there."""
        vm = self.vms[vmid]
        self._host_cut.discard(vmid)
        self.last_seen.pop(vmid, None)
        vm.host = host
        self.set_power(vm, True, f"HA recovery onto {host}")

    # -- faults -----------------------------------------------------------------------------

    def clear_faults(self) -> int:
        """End every fault. Tasks a hang left running end too, as when a person kills them
        (pve-common's worker: "interrupted by signal"), changing nothing: a task list that
        shows a start forever would hold every later fence of that VM."""
        cleared = len(self.faults)
        self.faults.clear()
        for task in self.tasks.values():
            if not task.finished and task.done_at is None:
                task.on_done = None
                task.exitstatus = "interrupted by signal"
                task.done_at = time.monotonic()
                task.poll(task.done_at)
        return cleared

    def fault(
        self, kind: FaultKind, *, host: str | None = None, vmid: int | None = None
    ) -> Fault | None:
        for f in self.faults:
            if f.kind is not kind:
                continue
            if f.host is not None and host is not None and f.host != host:
                continue
            if f.vmid is not None and f.vmid != vmid:
                continue
            if f.host is not None and host is None:
                continue
            return f
        return None

    # -- lookups ----------------------------------------------------------------------------

    def check_host(self, host: str) -> None:
        if host not in self.hosts:
            raise PveError(500, f"no such cluster node '{host}'")
        if dead := self.fault(FaultKind.HOST_UNREACHABLE, host=host):
            # pveproxy proxies the request to the host and reports AnyEvent's socket error.
            raise PveError(595, "No route to host", delay=min(dead.seconds, 30.0))

    def online(self, host: str) -> bool:
        return self.host_dead_since(host) is None

    @property
    def quorate(self) -> bool:
        """corosync's votequorum: one vote per host, one more for a QDevice, which votes with
        the side it can reach (the lab's QDevice is always reachable from the survivors)."""
        votes = sum(1 for h in self.hosts if self.online(h))
        expected = len(self.hosts)
        if self.qdevice and len(self.hosts) > 1:
            votes, expected = votes + (1 if votes else 0), expected + 1
        return votes * 2 > expected

    def check_quorum(self) -> None:
        """pmxcfs is read-only without quorum: qemu-server refuses every power action
        (PVE::Cluster::check_cfs_quorum)."""
        if not self.quorate:
            raise PveError(500, "cluster not ready - no quorum?")

    def host_dead_since(self, host: str) -> float | None:
        dead = self.fault(FaultKind.HOST_UNREACHABLE, host=host)
        return dead.since if dead else None

    def vm_on(self, host: str, vmid: int) -> Vm:
        self.check_host(host)
        vm = self.vms.get(vmid)
        if vm is None or vm.host != host:
            raise PveError(
                500, f"Configuration file 'nodes/{host}/qemu-server/{vmid}.conf' does not exist"
            )
        return vm

    def vm_by_name(self, name: str) -> Vm | None:
        """The node's own VM (templates and clones that share its name are not it)."""
        return next((vm for vm in self.vms.values() if vm.name == name and not vm.template), None)

    # -- time -------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance tasks and delayed effects; called before every API answer and periodically."""
        now = time.monotonic()
        if self.ha is not None:
            self.ha.tick(now)
        for task in self.tasks.values():
            task.poll(now)
        due = [p for p in self._pending if p[0] <= now]
        self._pending = [p for p in self._pending if p[0] > now]
        for _at, action in due:
            action()

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        self._pending.append((time.monotonic() + delay, action))

    # -- power ------------------------------------------------------------------------------

    def set_power(self, vm: Vm, running: bool, cause: str = "lab") -> None:
        if vm.running == running:
            return
        vm.running = running
        vm.power_cause = cause
        if running:
            vm.started_at = time.time()
            for hook in self.on_power_on:
                hook(vm)
        else:
            for hook in self.on_power_off:
                hook(vm)

    def host_power(self, host: str, on: bool, *, cause: str = "") -> list[Vm]:
        """Cut or restore a whole host's power (its BMC's chassis power, or the lab's plug).

        Off: every VM on it stops at once and the host drops out of its cluster (595 "No route
        to host"); a hung host simply goes dark. On: the host boots, rejoins, and starts the VMs
        its failure stopped (``onboot``); a host already on is left as it is, hung or not, as a
        BMC ignores power on for a running chassis. Returns the VMs that changed."""
        self._known(host)
        if not on:
            self.host_on[host] = False
            self.hung.discard(host)
            return self._host_down(host, cause or f"host {host} lost power")
        if host in self.hung:
            return []
        self.host_on[host] = True
        self.faults = [
            f for f in self.faults if not (f.kind is FaultKind.HOST_UNREACHABLE and f.host == host)
        ]
        changed = []
        for vm in self.vms.values():
            if vm.host == host and vm.vmid in self._host_cut:
                self._host_cut.discard(vm.vmid)
                self.set_power(vm, True, f"host {host} booted (onboot)")
                changed.append(vm)
        return changed

    def host_hang(self, host: str) -> list[Vm]:
        """The host stops answering its cluster (595) and its guests stop, but its power stays
        on and its BMC reads on: its VMs are not known off (the power history keeps them
        running). Only a power off through the BMC makes them provably dead."""
        self._known(host)
        if not self.host_on[host]:
            raise PveError(500, f"host '{host}' is powered off; it cannot hang")
        self.hung.add(host)
        if self.fault(FaultKind.HOST_UNREACHABLE, host=host) is None:
            self.faults.append(Fault(FaultKind.HOST_UNREACHABLE, host=host))
            self._remember(host)
        frozen = [vm for vm in self.vms.values() if vm.host == host and vm.running]
        for vm in frozen:
            for hook in self.on_freeze:
                hook(vm)
        return frozen

    def _remember(self, host: str) -> None:
        for vm in self.vms.values():
            if vm.host == host:
                self.last_seen[vm.vmid] = replace(vm)

    def _known(self, host: str) -> None:
        if host not in self.hosts:
            raise PveError(500, f"no such cluster node '{host}'")

    def _host_down(self, host: str, cause: str) -> list[Vm]:
        if self.fault(FaultKind.HOST_UNREACHABLE, host=host) is None:
            self.faults.append(Fault(FaultKind.HOST_UNREACHABLE, host=host))
            self._remember(host)
        changed = []
        for vm in self.vms.values():
            if vm.host == host and vm.running:
                self.set_power(vm, False, cause)
                self._host_cut.add(vm.vmid)
                changed.append(vm)
        return changed

    def power_task(self, host: str, vmid: int, action: str, user: str) -> Upid:
        """Start a stop/start/shutdown/reset task as ``qm`` would, returning its UPID.

        As in qemu-server, the checks that need the VM's lock (locked, already running) run in
        the worker: the request gets a UPID and the task ends with the error.
        """
        vm = self.vm_on(host, vmid)
        self.check_quorum()
        if vm.template and action == "start":
            raise PveError(500, "you can't start a vm if it's a template")
        now = time.time()
        ha = vm.ha_managed and action in ("stop", "start", "shutdown")
        kind = {"stop": "qmstop", "start": "qmstart", "shutdown": "qmshutdown", "reset": "qmreset"}[
            action
        ]
        if ha:
            # The HA stack takes the request and answers at once; a shutdown is its stop.
            kind = "hastart" if action == "start" else "hastop"
            if self.ha is not None:
                self.ha.request(vmid, "started" if action == "start" else "stopped")
        upid = Upid(
            host,
            next(self._pids),
            int(time.monotonic() * 100) & 0xFFFFFFFF,
            int(now),
            kind,
            str(vmid),
            user,
        )
        hung = self.fault(FaultKind.HANG_TASKS, host=host, vmid=vmid) is not None
        ignore_stop = self.fault(FaultKind.IGNORE_STOP, host=host, vmid=vmid) is not None
        locked = self.fault(FaultKind.LOCKED, host=host, vmid=vmid) is not None
        warnings = self.fault(FaultKind.STOP_WARNINGS, host=host, vmid=vmid) is not None
        effect: Callable[[], None] | None = None
        exitstatus = "OK"
        cause = f"{kind} by {user}"
        if locked and not ha:
            exitstatus = "VM is locked (backup)"
        elif action == "start" and vm.running and not ha:
            exitstatus = f"VM {vmid} already running"
        elif not hung:
            if action in ("stop", "shutdown") and not ignore_stop:
                if ha:
                    # The hastop task ends before the VM is off: only status/current tells.
                    def effect() -> None:
                        self._later(
                            self.timings.ha_stop_delay_seconds,
                            lambda: self.set_power(vm, False, cause),
                        )
                else:
                    if warnings and vm.running and action == "stop":
                        exitstatus = "WARNINGS: 1"

                    def effect() -> None:
                        self.set_power(vm, False, cause)
            elif action == "start":

                def effect() -> None:
                    self.set_power(vm, True, cause)
            elif action == "reset":

                def effect() -> None:
                    if vm.running:
                        self.set_power(vm, False, cause)
                        self.set_power(vm, True, cause)

        changes = effect is not None and (vm.running if action != "start" else not vm.running)
        for hook in self.on_task:
            hook(vm, str(upid), kind, user, changes)
        delay = 0.05 if ha else self.timings.task_seconds
        task = Task(upid, None if hung else time.monotonic() + delay, on_done=effect)
        task.exitstatus = exitstatus
        self.tasks[str(upid)] = task
        return upid

    def task(self, host: str, upid: str) -> Task:
        self.check_host(host)
        task = self.tasks.get(upid)
        if task is None or task.upid.node != host:
            # pve-manager Tasks.pm: an unknown task is a parameter error on `upid`.
            raise PveError(400, "Parameter verification failed.", {"upid": "no such task"})
        return task
