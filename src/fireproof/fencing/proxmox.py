"""Fencing through the Proxmox VE API, with proxmoxer.

Off is verified by polling ``status/current`` until it reads ``stopped``: the stop task alone
proves nothing (for an HA-managed VM it ends before the VM is off). ``skiplock`` is never sent:
Proxmox refuses it to API tokens, and forcing past a lock is not ours to decide.

Checked against the behaviour of Proxmox VE 8.x and 9.x (qemu-server, pve-manager,
pve-access-control, pve-http-server, pve-common) and proxmoxer 2.x:
- a task's ``exitstatus`` is ``OK`` or ``WARNINGS: N`` on success (pve-common ``PVE/UPID.pm``);
  a hard stop of a stuck guest writes warnings, so both count as done;
- the message of an error is the HTTP reason phrase; proxmoxer keeps it in ``content`` and the
  per-field ``errors`` beside it, and raises ``AuthenticationError`` for *any* non-200 answer
  of ``/access/ticket`` (only a 401 means refused credentials);
- 595 is pveproxy's "cannot reach that cluster node" (AnyEvent's socket errors).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import stamina
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException

from fireproof.clock import SYSTEM_CLOCK, Clock
from fireproof.config import ProxmoxDevice, SecretReader
from fireproof.fencing.base import (
    FencingError,
    HaStatus,
    Machine,
    MachineIdentity,
    PermanentFencingError,
    PowerPoll,
    PowerState,
    TransientFencingError,
    wait_for_state,
)

T = TypeVar("T")
_STATES = {"running": PowerState.ON, "stopped": PowerState.OFF}
_TASK_OK = re.compile(r"^(OK|WARNINGS: \d+)$")
START_TASKS = frozenset({"qmstart", "hastart"})
"""Task types that end with the VM running (``qm start``; a start of an HA-managed VM)."""
PASSING_TASKS = START_TASKS | frozenset({"qmreboot", "qmreset", "qmigrate", "hamigrate"})
"""Tasks during which a VM may read stopped for a moment: a start, a reboot, a migration."""
_LOGIN_CODE = re.compile(r"code: (\d+)")
# What proxmoxer and requests raise for a refused, failed or garbled exchange: ValueError covers
# a JSON decode error and a header requests refuses; KeyError/TypeError an answer without data.
_CLIENT_ERRORS = (
    AuthenticationError,
    ResourceException,
    requests.exceptions.RequestException,
    ValueError,
    KeyError,
    TypeError,
)
MINIMAL_PRIVILEGES = "VM.PowerMgmt and VM.Audit on /vms, Sys.Audit on /nodes"
NOTHING_RELEASED = "nothing was released"
RETRY_PAUSE_MAX = 2.0
"""The longest pause between two tries of one request (stamina's backoff, capped)."""


def _reason(exc: ResourceException) -> str:
    """Proxmox's own words: the reason phrase, then any per-field errors."""
    text = str(exc.content or "").strip() or str(exc.status_message or "")
    errors = exc.errors if isinstance(exc.errors, dict) else {}
    if errors:
        text += " (" + "; ".join(f"{k}: {str(v).strip()}" for k, v in errors.items()) + ")"
    return text


@dataclass(frozen=True, slots=True)
class ProxmoxCluster:
    name: str | None
    """None: a standalone host (no cluster)."""
    members: dict[str, bool]
    """Host -> online."""
    quorate: bool
    qdevice: bool


class ProxmoxFencer:
    def __init__(
        self,
        device: ProxmoxDevice,
        read_secret: SecretReader | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = device.name
        self.device = device
        self._clock = clock
        # Secrets are resolved now, so a missing or malformed one fails before any write to the
        # cluster (cordon) rather than half-way through a remediation.
        if device.token_id and device.token_secret:
            self._secret = device.token_secret.resolve(read_secret)
        else:
            assert device.password is not None  # noqa: S101 - the config loader checked it
            self._secret = device.password.resolve(read_secret)
        self._api: Any = None

    # -- connection ---------------------------------------------------------------------------

    def _connect(self, deadline: float | None = None) -> Any:
        if self._api is not None:
            return self._api
        d = self.device
        host, _, port = d.url.removeprefix("https://").partition(":")
        verify: bool | str = (str(d.ca_file) if d.ca_file else True) if d.verify_tls else False
        common: dict[str, Any] = {
            "port": int(port or 8006),
            "verify_ssl": verify,
            "timeout": d.timeout_seconds,
        }
        secret = self._secret
        if d.token_id:
            user, _, token_name = d.token_id.partition("!")
            self._api = self._call(
                "connect",
                lambda: ProxmoxAPI(
                    host, user=user, token_name=token_name, token_value=secret, **common
                ),
                deadline,
            )
        else:
            self._api = self._call(
                "log in",
                lambda: ProxmoxAPI(host, user=d.user, password=secret, **common),
                deadline,
            )
        return self._api

    def _call(self, what: str, fn: Callable[[], T], deadline: float | None = None) -> T:
        """One API call, retried on transient failures while the deadline leaves room for a
        whole further request (its longest pause included). Every failure becomes a typed error
        without secrets."""
        d = self.device

        def retry(exc: Exception) -> bool:
            if not isinstance(exc, TransientFencingError):
                return False  # refused credentials, missing privileges, no such VM
            room = self._clock.monotonic() + RETRY_PAUSE_MAX + d.timeout_seconds
            return deadline is None or room <= deadline

        for attempt in stamina.retry_context(
            on=retry,
            attempts=d.retries + 1,
            timeout=None,  # the deadline above bounds the tries
            wait_initial=0.5,
            wait_max=RETRY_PAUSE_MAX,
            wait_jitter=0.2,
        ):
            with attempt:
                try:
                    return fn()
                except FencingError:
                    raise
                except _CLIENT_ERRORS as exc:
                    raise self._translate(what, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _translate(self, what: str, exc: Exception) -> FencingError:
        url, name = self.device.url, self.name
        if isinstance(exc, AuthenticationError):
            found = _LOGIN_CODE.search(str(exc))
            code = int(found.group(1)) if found else 0
            if code == 401:
                return PermanentFencingError(
                    f"Proxmox {url} refused the credentials of device {name!r} (401)",
                    hint="check the user (USER@REALM) and password in fireproof.yaml's secret "
                    "source",
                )
            return (
                self._host_error(what, code, "")
                if code == 595
                else TransientFencingError(
                    f"Proxmox {url}: {what} failed: the login answered HTTP {code or '?'}",
                    hint=NOTHING_RELEASED,
                )
            )
        if isinstance(exc, ResourceException):
            return self._resource_error(what, exc)
        if isinstance(exc, requests.exceptions.SSLError):
            return PermanentFencingError(
                f"TLS verification of {url} failed",
                hint="set ca_file to the Proxmox CA (pve-root-ca.pem) of this device",
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return TransientFencingError(
                f"Proxmox {url}: {what} timed out after {self.device.timeout_seconds:g} s",
                hint=NOTHING_RELEASED,
            )
        if isinstance(exc, requests.exceptions.ConnectionError):
            return TransientFencingError(f"Proxmox {url} is unreachable ({what})", hint=None)
        # Broken answers (cut short, not JSON, missing fields) and client-side refusals. The
        # exception text is left out on purpose: requests quotes header values, secrets included.
        return TransientFencingError(
            f"Proxmox {url}: {what} failed: unusable answer ({type(exc).__name__})",
            hint=NOTHING_RELEASED,
        )

    def _resource_error(self, what: str, exc: ResourceException) -> FencingError:
        url, status, reason = self.device.url, int(exc.status_code), _reason(exc)
        if status == 401:
            return PermanentFencingError(
                f"Proxmox {url} refused the credentials of device {self.name!r} (401)",
                hint="check the token id and secret (or user and password) in fireproof.yaml",
            )
        if status == 403:
            return PermanentFencingError(
                f"Proxmox {url}: {what}: {reason}",
                hint=f"fireproof's token or user needs {MINIMAL_PRIVILEGES}",
            )
        if status == 595:
            return self._host_error(what, status, reason)
        message = f"Proxmox {url}: {what} failed: {reason} ({status})"
        if status >= 500 and "does not exist" not in reason:
            return TransientFencingError(message, hint=NOTHING_RELEASED)
        return PermanentFencingError(message, hint=NOTHING_RELEASED)

    def _host_error(self, what: str, status: int, reason: str) -> FencingError:
        detail = f": {reason}" if reason else ""
        return TransientFencingError(
            f"Proxmox {self.device.url}: {what} failed: the Proxmox host is unreachable from its "
            f"cluster ({status}{detail})",
            hint="the host may be down: its VMs cannot be fenced through the API; Proxmox HA "
            "(its watchdog) or a person at the host must act. Nothing was released",
        )

    # -- discovery and identity ---------------------------------------------------------------

    def list_vms(self) -> list[tuple[str, str, int]]:
        """(name, host, vmid) of every VM the credentials can see, for discovery by name.

        Templates are left out: a template always reads ``stopped``, so "verifying it off" would
        prove nothing about the node. So are VMs of a dead host, which have no name.
        """
        api = self._connect()
        rows = self._call("list VMs", lambda: api.cluster.resources.get(type="vm"))
        return [
            (str(r["name"]), str(r["node"]), int(r["vmid"]))
            for r in rows
            if r.get("type") == "qemu" and r.get("name") and not int(r.get("template") or 0)
        ]

    def power_states(self) -> PowerPoll:
        """VMID -> power of every VM, and the offline hosts, from one ``cluster/resources``
        call (detection only). No ``type`` filter: one call gives both the VMs and the hosts.

        A dead host's VMs keep their last status for a while, then read ``unknown``; a paused VM
        reads ``running`` there and is ON. A host row needs Sys.Audit: without it no host is
        known offline, and a dead host shows only as its nodes' silence.
        """
        api = self._connect()
        rows = self._call("poll VMs", lambda: api.cluster.resources.get())
        return PowerPoll(
            vms={
                int(r["vmid"]): _STATES.get(str(r.get("status")), PowerState.UNKNOWN)
                for r in rows
                if r.get("type") == "qemu" and not int(r.get("template") or 0)
            },
            offline_hosts=frozenset(
                str(r.get("node"))
                for r in rows
                if r.get("type") == "node" and r.get("status") == "offline"
            ),
            uptimes={
                int(r["vmid"]): int(r.get("uptime") or 0)
                for r in rows
                if r.get("type") == "qemu" and r.get("status") == "running"
            },
            hosts={
                int(r["vmid"]): str(r["node"])
                for r in rows
                if r.get("type") == "qemu" and r.get("node")
            },
        )

    def cluster_facts(self) -> ProxmoxCluster:
        """The Proxmox cluster's name, members, quorum and QDevice (``/cluster/status``,
        ``/cluster/config/qdevice``; Sys.Audit on ``/``): what failure-domain checks need."""
        api = self._connect()
        rows = self._call("cluster status", api.cluster.status.get)
        qdevice = self._call("QDevice status", api.cluster.config.qdevice.get)
        cluster = next((r for r in rows if r.get("type") == "cluster"), None)
        members = {
            str(r.get("name")): bool(int(r.get("online") or 0))
            for r in rows
            if r.get("type") == "node"
        }
        return ProxmoxCluster(
            name=str(cluster.get("name")) if cluster else None,
            members=members,
            quorate=bool(int(cluster.get("quorate") or 0)) if cluster else True,
            qdevice=bool(qdevice),
        )

    def ha_status(self) -> HaStatus | None:
        """Proxmox HA's record (pve-manager ``/cluster/ha/status/manager_status``, Sys.Audit on
        ``/``): each host's HA state and each HA-managed VM's; None without HA."""
        api = self._connect()
        data = self._call("HA status", api.cluster.ha.status.manager_status.get)
        if not isinstance(data, dict):
            return None
        manager = data.get("manager_status") or {}
        if not manager.get("node_status"):
            return None
        quorum = data.get("quorum") or {}
        services: dict[int, tuple[str, str]] = {}
        for sid, entry in (manager.get("service_status") or {}).items():
            kind, _, vmid = str(sid).partition(":")
            if kind == "vm" and vmid.isdigit() and isinstance(entry, dict):
                services[int(vmid)] = (str(entry.get("state")), str(entry.get("node")))
        return HaStatus(
            quorate=str(quorum.get("quorate", "0")) == "1",
            node_status={str(k): str(v) for k, v in manager["node_status"].items()},
            services=services,
        )

    def identify(self, machine: Machine) -> MachineIdentity:
        """The VM's name and SMBIOS UUID, from its configuration."""
        vm = self._vm(machine)
        config: dict[str, Any] = self._call(f"configuration of {machine.label}", vm.config.get)
        uuid = None
        for part in str(config.get("smbios1") or "").split(","):
            key, _, value = part.partition("=")
            if key.strip() == "uuid" and value.strip():
                uuid = value.strip().lower()
        name = config.get("name")
        return MachineIdentity(
            name=str(name) if name else None,
            uuid=uuid,
            template=bool(int(config.get("template") or 0)),
        )

    def _vm(self, machine: Machine, deadline: float | None = None) -> Any:
        if machine.host is None or machine.vmid is None:
            raise PermanentFencingError(
                f"{machine.node}: the inventory gives no Proxmox host and VMID for device "
                f"{self.name!r}"
            )
        return self._connect(deadline).nodes(machine.host).qemu(machine.vmid)

    # -- Fencer -------------------------------------------------------------------------------

    def status(self, machine: Machine) -> PowerState:
        return self._status(machine, None)

    def _status(self, machine: Machine, deadline: float | None) -> PowerState:
        vm = self._vm(machine, deadline)
        current = self._call(f"status of {machine.label}", vm.status.current.get, deadline)
        state = _STATES.get(str(current.get("status")), PowerState.UNKNOWN)
        if state is PowerState.OFF and self._start_under_way(machine, deadline):
            # Someone's start task runs: the VM reads stopped for a moment more, and then it
            # runs. "Off" would be true now and false by the time its volumes were released.
            return PowerState.ON
        return state

    def _start_under_way(self, machine: Machine, deadline: float | None) -> bool:
        return bool(self._active_tasks(machine, deadline) & START_TASKS)

    def _active_tasks(self, machine: Machine, deadline: float | None) -> set[str]:
        api = self._connect(deadline)
        tasks: list[dict[str, Any]] = self._call(
            f"running tasks of {machine.label}",
            lambda: api.nodes(machine.host).tasks.get(source="active", vmid=machine.vmid),
            deadline,
        )
        return {str(t.get("type")) for t in tasks}

    def settled_off(self, machine: Machine) -> bool | None:
        """Off for good: ``status/current`` reads stopped and no start, reboot or migration of
        the VM runs (the node's active task list). None when either cannot be read."""
        deadline = self._clock.monotonic() + self.device.timeout_seconds
        try:
            vm = self._vm(machine, deadline)
            current = self._call(f"status of {machine.label}", vm.status.current.get, deadline)
            if _STATES.get(str(current.get("status"))) is not PowerState.OFF:
                return False
            return not self._active_tasks(machine, deadline) & PASSING_TASKS
        except FencingError:
            return None

    def off(self, machine: Machine) -> PowerState:
        return self._power(machine, "stop", PowerState.OFF)

    def on(self, machine: Machine) -> PowerState:
        return self._power(machine, "start", PowerState.ON)

    def _power(self, machine: Machine, action: str, want: PowerState) -> PowerState:
        deadline = self._clock.monotonic() + self.device.verify_timeout_seconds
        if self._status(machine, deadline) is want:
            return want
        vm = self._vm(machine, deadline)
        # A stuck guest is killed after `timeout` + 10 s instead of Proxmox's default 60 + 10 s.
        params = {"timeout": self.device.stop_timeout_seconds} if action == "stop" else {}
        post = getattr(vm.status, action).post
        upid = str(self._call(f"{action} {machine.label}", lambda: post(**params), deadline))
        host = machine.host or ""

        def read() -> PowerState:
            self._check_task(host, upid, action, machine, deadline)
            return self._status(machine, deadline)

        return wait_for_state(
            read,
            want,
            timeout=max(0.0, deadline - self._clock.monotonic()),
            interval=self.device.poll_interval_seconds,
            what=f"{machine.node} ({machine.label}) after {action}",
            clock=self._clock,
        )

    def _check_task(
        self, host: str, upid: str, action: str, machine: Machine, deadline: float
    ) -> None:
        """A failed task is a definite failure; a finished or unreadable one proves nothing."""
        try:
            task: dict[str, Any] = self._call(
                "task status",
                lambda: self._connect().nodes(host).tasks(upid).status.get(),
                deadline,
            )
        except TransientFencingError:
            return  # status/current decides; an unreadable task log is not a verdict
        exit_status = str(task.get("exitstatus") or "")
        if task.get("status") == "stopped" and exit_status and not _TASK_OK.match(exit_status):
            raise PermanentFencingError(
                f"{machine.node}: the {action} task of {machine.label} failed: {exit_status}",
                hint=NOTHING_RELEASED,
            )
