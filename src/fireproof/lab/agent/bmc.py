"""Each emulated Proxmox host's BMC: real IPMI 2.0 (RMCP+) over UDP on 127.0.0.1.

pyghmi's BMC server (the one OpenStack's virtualbmc runs) answers ``ipmitool`` and ClusterLabs'
``fence_ipmilan`` unchanged. Its chassis power is the host's power in the emulated cluster:
off stops every VM on the host at once (a hung host's VMs are already dead), on boots the host
and the VMs its power loss stopped.

pyghmi serves all its sockets from one blocking loop: it runs on one thread, and every power
change is handed to the agent's event loop, where the cluster model lives.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from pyghmi.ipmi import bmc as pyghmi_bmc

log = logging.getLogger("fireproof.lab.agent.bmc")

IPMI_OK = 0
IPMI_BUSY = 0xC0
"""Node busy: what a BMC answers when it cannot act now."""


class BmcFault(enum.StrEnum):
    UNREACHABLE = "unreachable"
    """The BMC answers nothing (its network is down): every request times out."""
    AUTH_FAILURE = "auth-failure"
    """The BMC refuses the credentials (a rotated password)."""
    IGNORE_OFF = "ignore-off"
    """Power off is acknowledged, but the host keeps running (a stuck power controller)."""


class HostPower:
    """What a BMC needs of its host, answered on the agent's loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read: Callable[[str], bool],
        switch: Callable[[str, bool], Any],
    ) -> None:
        self._loop = loop
        self._read = read
        self._switch = switch

    def _on_loop(self, call: Callable[[], Any]) -> Any:
        done: Future[Any] = Future()

        def run() -> None:
            try:
                done.set_result(call())
            except BaseException as exc:  # handed back to the BMC thread, which answers busy
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout=10)

    def is_on(self, host: str) -> bool:
        return bool(self._on_loop(lambda: self._read(host)))

    def switch(self, host: str, on: bool) -> None:
        self._on_loop(lambda: self._switch(host, on))


class _Users:
    """pyghmi asks ``authdata.get(user)`` for the password; a fault answers a wrong one."""

    def __init__(self, owner: HostBmc, username: str, password: str) -> None:
        self._owner = owner
        self._username = username
        self._password = password
        self._wrong = secrets.token_hex(16)

    def get(self, user: Any, default: Any = None) -> Any:
        name = user.decode() if isinstance(user, bytes) else user
        if name != self._username:
            return default
        return self._wrong if self._owner.fault is BmcFault.AUTH_FAILURE else self._password


class HostBmc(pyghmi_bmc.Bmc):  # type: ignore[misc]
    def __init__(self, host: str, port: int, username: str, password: str, power: HostPower):
        self.host = host
        self.power = power
        self.fault: BmcFault | None = None
        self.users = _Users(self, username, password)  # its Redfish side checks the same ones
        super().__init__(self.users, port=port, address="127.0.0.1")

    def sessionless_data(self, data: Any, sockaddr: Any) -> Any:
        if self.fault is BmcFault.UNREACHABLE:
            return None  # dropped: the client times out as on a dead network
        return super().sessionless_data(data, sockaddr)

    def get_power_state(self) -> str:
        return "on" if self.power.is_on(self.host) else "off"

    def power_off(self) -> int:
        if self.fault is BmcFault.IGNORE_OFF:
            log.info("BMC of %s: power off acknowledged and ignored (fault)", self.host)
            return IPMI_OK
        return self._switch(False)

    def power_on(self) -> int:
        return self._switch(True)

    def power_shutdown(self) -> int:
        return self.power_off()

    def power_cycle(self) -> int:
        if self.fault is BmcFault.IGNORE_OFF:
            return IPMI_OK
        if self._switch(False) != IPMI_OK:
            return IPMI_BUSY
        return self._switch(True)

    def power_reset(self) -> int:
        return self.power_cycle()

    def _switch(self, on: bool) -> int:
        try:
            self.power.switch(self.host, on)
        except Exception as exc:
            log.warning("BMC of %s: power %s failed: %s", self.host, "on" if on else "off", exc)
            return IPMI_BUSY
        log.info("BMC of %s: chassis power %s", self.host, "on" if on else "off")
        return IPMI_OK


def serve_forever(bmcs: list[HostBmc]) -> threading.Thread:
    """One daemon thread runs pyghmi's loop for every BMC (their sockets are registered)."""

    def loop() -> None:
        while True:
            try:
                pyghmi_bmc.Bmc.listen(timeout=1)
            except Exception:  # a malformed packet must not take every BMC down
                log.exception("BMC loop")

    thread = threading.Thread(target=loop, name="bmc", daemon=True)
    thread.start()
    log.info("BMCs of %s", ", ".join(f"{b.host} on udp/{b.port}" for b in bmcs))
    return thread
