"""The explicit registry of fencing drivers: device type -> factory. No discovery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fireproof.config import Device, FakeDevice, FenceAgentDevice, ProxmoxDevice, SecretReader
from fireproof.fencing.base import Fencer


def _proxmox(device: Any, read_secret: SecretReader | None) -> Fencer:
    from fireproof.fencing.proxmox import ProxmoxFencer  # proxmoxer is imported only when used

    return ProxmoxFencer(device, read_secret)


def _agent(device: Any, read_secret: SecretReader | None) -> Fencer:
    from fireproof.fencing.agent import FenceAgentFencer

    return FenceAgentFencer(device, read_secret)


def _fake(device: Any, _read_secret: SecretReader | None) -> Fencer:
    from fireproof.fencing.fake import FakeFencer

    return FakeFencer(device)


DRIVERS: dict[type, Callable[[Any, SecretReader | None], Fencer]] = {
    ProxmoxDevice: _proxmox,
    FenceAgentDevice: _agent,
    FakeDevice: _fake,
}


def build_fencer(device: Device, read_secret: SecretReader | None = None) -> Fencer:
    return DRIVERS[type(device)](device, read_secret)
