"""A fencing device that only remembers power states: for dry runs and demos.

It never touches a machine, so `heal` refuses to release volumes through it unless the user
explicitly configured it; its off is as good as the user's word.
"""

from __future__ import annotations

from fireproof.config import FakeDevice
from fireproof.fencing.base import Machine, PowerState


class FakeFencer:
    def __init__(self, device: FakeDevice) -> None:
        self.name = device.name
        self.states: dict[str, PowerState] = {}

    def status(self, machine: Machine) -> PowerState:
        return self.states.get(machine.node, PowerState.ON)

    def off(self, machine: Machine) -> PowerState:
        self.states[machine.node] = PowerState.OFF
        return PowerState.OFF

    def on(self, machine: Machine) -> PowerState:
        self.states[machine.node] = PowerState.ON
        return PowerState.ON
