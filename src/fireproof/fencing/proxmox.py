"""Fencing through the Proxmox VE API, with proxmoxer.

Off is verified by polling ``status/current`` until it reads ``stopped``: the stop task alone
proves nothing (for an HA-managed VM it ends before the VM is off). ``skiplock`` is never sent:
Proxmox refuses it to API tokens, and forcing past a lock is not ours to decide.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException

from fireproof.config import ProxmoxDevice, SecretReader
from fireproof.fencing.base import FencingError, Machine, PowerState, wait_for_state

T = TypeVar("T")
_STATES = {"running": PowerState.ON, "stopped": PowerState.OFF}


class ProxmoxFencer:
    def __init__(self, device: ProxmoxDevice, read_secret: SecretReader | None = None) -> None:
        self.name = device.name
        self.device = device
        self._read_secret = read_secret
        self._api: Any = None

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> Any:
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
        if d.token_id and d.token_secret:
            user, _, token_name = d.token_id.partition("!")
            secret = d.token_secret.resolve(self._read_secret)
            self._api = self._call(
                "connect",
                lambda: ProxmoxAPI(
                    host, user=user, token_name=token_name, token_value=secret, **common
                ),
            )
        else:
            assert d.user is not None  # noqa: S101 - the config loader checked both
            assert d.password is not None  # noqa: S101
            password = d.password.resolve(self._read_secret)
            self._api = self._call(
                "log in", lambda: ProxmoxAPI(host, user=d.user, password=password, **common)
            )
        return self._api

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one API call with retries on transient failures; errors never carry secrets."""
        url = self.device.url
        attempts = self.device.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except AuthenticationError:
                raise FencingError(
                    f"Proxmox {url} refused the credentials of device {self.name!r}",
                    hint="check the user/password or token in fireproof.yaml's secret source",
                ) from None
            except ResourceException as exc:
                status = int(exc.status_code)
                if status == 401:
                    raise FencingError(
                        f"Proxmox {url} refused the credentials of device {self.name!r} (401)",
                        hint="check the token id and secret, and the token's privileges",
                    ) from None
                transient = status >= 500
                message = f"Proxmox {url}: {what} failed: {status} {exc.status_message}"
                if status == 595:
                    message = f"Proxmox {url}: {what} failed: the cluster node is unreachable (595)"
            except requests.exceptions.SSLError:
                raise FencingError(
                    f"TLS verification of {url} failed",
                    hint="set ca_file to the Proxmox CA (pve-root-ca.pem) of this device",
                ) from None
            except requests.exceptions.Timeout:
                transient = True
                message = f"Proxmox {url}: {what} timed out after {self.device.timeout_seconds:g} s"
            except requests.exceptions.ConnectionError:
                transient = True
                message = f"Proxmox {url} is unreachable ({what})"
            if not transient or attempt == attempts:
                raise FencingError(message, hint="nothing was released")
            time.sleep(min(2.0, 0.5 * attempt))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def list_vms(self) -> list[tuple[str, str, int]]:
        """(name, host, vmid) of every VM the credentials can see, for discovery by name."""
        api = self._connect()
        rows = self._call("list VMs", lambda: api.cluster.resources.get(type="vm"))
        return [
            (str(r["name"]), str(r["node"]), int(r["vmid"]))
            for r in rows
            if r.get("type") == "qemu" and r.get("name")
        ]

    def _vm(self, machine: Machine) -> Any:
        if machine.host is None or machine.vmid is None:
            raise FencingError(
                f"{machine.node}: the inventory gives no Proxmox host and VMID for device "
                f"{self.name!r}"
            )
        return self._connect().nodes(machine.host).qemu(machine.vmid)

    # -- Fencer -------------------------------------------------------------------------------

    def status(self, machine: Machine) -> PowerState:
        vm = self._vm(machine)
        current = self._call(f"status of {machine.label}", lambda: vm.status.current.get())
        return _STATES.get(str(current.get("status")), PowerState.UNKNOWN)

    def off(self, machine: Machine) -> PowerState:
        return self._power(machine, "stop", PowerState.OFF)

    def on(self, machine: Machine) -> PowerState:
        return self._power(machine, "start", PowerState.ON)

    def _power(self, machine: Machine, action: str, want: PowerState) -> PowerState:
        if self.status(machine) is want:
            return want
        vm = self._vm(machine)
        upid = str(
            self._call(f"{action} {machine.label}", lambda: getattr(vm.status, action).post())
        )
        assert machine.host is not None  # noqa: S101 - _vm checked it

        def read() -> PowerState:
            self._check_task(machine.host or "", upid, action, machine)
            return self.status(machine)

        return wait_for_state(
            read,
            want,
            timeout=self.device.verify_timeout_seconds,
            interval=self.device.poll_interval_seconds,
            what=f"{machine.node} ({machine.label}) after {action}",
        )

    def _check_task(self, host: str, upid: str, action: str, machine: Machine) -> None:
        """A failed task is a definite failure; a finished or unreadable one proves nothing."""
        task: dict[str, Any] = {}
        with contextlib.suppress(FencingError):
            task = self._call(
                "task status", lambda: self._connect().nodes(host).tasks(upid).status.get()
            )
        exit_status = task.get("exitstatus")
        if task.get("status") == "stopped" and exit_status not in (None, "OK"):
            raise FencingError(
                f"{machine.node}: the {action} task of {machine.label} failed: {exit_status}",
                hint="nothing was released",
            )
