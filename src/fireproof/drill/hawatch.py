"""Proxmox HA's side of a host drill: when HA puts the lost host in ``fence``, and when it
acknowledges the fence (it got the host's agent lock). Read from the VMs' Proxmox device, once a
second, only while a host drill watches."""

from __future__ import annotations

from collections.abc import Callable

from fireproof.errors import FireproofError
from fireproof.fencing import HaReader
from fireproof.report.phases import HA_FENCE, HA_FENCE_ACK

Note = Callable[[float, str, str, str], None]
"""(time, phase, object, evidence): the drill observer's note."""


class HaWatch:
    def __init__(self, hosts: list[str], reader: HaReader | None, note: Note) -> None:
        self.hosts = hosts
        self.reader = reader
        self.note = note
        self._fencing: set[str] = set()
        self._acknowledged: set[str] = set()
        self._next = 0.0

    def tick(self, now: float) -> None:
        if self.reader is None or not self.hosts or now < self._next:
            return
        self._next = now + 1.0
        try:
            status = self.reader.ha_status()
        except FireproofError:
            return  # the watch goes on; a missed second only delays the note
        if status is None:
            return
        for host in self.hosts:
            state = status.node_status.get(host)
            if state == "fence" and host not in self._fencing:
                self._fencing.add(host)
                evidence = "Proxmox HA: node state fence (it waits for the host's agent lock)"
                self.note(now, HA_FENCE, f"host/{host}", evidence)
            elif state == "unknown" and host in self._fencing and host not in self._acknowledged:
                self._acknowledged.add(host)
                evidence = "Proxmox HA: fencing acknowledged (it got the host's agent lock)"
                self.note(now, HA_FENCE_ACK, f"host/{host}", evidence)
