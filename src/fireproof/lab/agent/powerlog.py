"""The emulator's power history: every VM power change and every power task, when and by whom.

JSON lines in ``DIR/logs/power.jsonl``, two shapes:
- a change: ``{"t", "vmid", "vm", "host", "running", "cause"}``;
- a task: ``{"t", "vmid", "vm", "host", "task", "upid", "user", "changes"}`` (``changes``:
  whether the task will change the VM's power: false for a stop of a stopped VM, or a task a
  fault swallows).
Together with the API server's audit log it is the evidence that no volume was released while
its node's VM was running, kept by the lab and never by the remediator under test.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from fireproof.lab.proxmox.model import Cluster, Vm

log = logging.getLogger(__name__)


def record_power(cluster: Cluster, path: Path) -> None:
    path.touch()  # the history exists from the start: "nothing changed power" is readable

    def write(vm: Vm, **fields: Any) -> None:
        entry = {"t": round(time.time(), 4), "vmid": vm.vmid, "vm": vm.name, "host": vm.host}
        try:
            with path.open("a", encoding="utf-8") as out:
                out.write(json.dumps({**entry, **fields}, separators=(",", ":")) + "\n")
        except OSError as exc:
            log.warning("power history not written: %s", exc)

    def task(vm: Vm, upid: str, kind: str, user: str, changes: bool) -> None:
        write(vm, task=kind, upid=upid, user=user, changes=changes)

    cluster.on_power_off.append(lambda vm: write(vm, running=False, cause=vm.power_cause))
    cluster.on_power_on.append(lambda vm: write(vm, running=True, cause=vm.power_cause))
    cluster.on_task.append(task)
