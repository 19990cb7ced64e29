"""The lab's own evidence of what happened to machines and volumes, never a remediator's claims.

- The Proxmox emulator's power history (``logs/power.jsonl``): every VM power change, when and
  at whose request.
- The API server's audit log (``logs/audit.jsonl``, the lab's audit policy): every release of a
  node's volumes: the out-of-service taint, a force-deleted pod, a deleted VolumeAttachment.

From both: was any volume released while its node's VM was running?
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fireproof.errors import UsageError
from fireproof.lab.pki import AGENT

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


@dataclass(frozen=True, slots=True)
class PowerChange:
    t: float
    vm: str
    running: bool
    cause: str


@dataclass(frozen=True, slots=True)
class Release:
    t: float
    node: str
    what: str
    actor: str

    def as_dict(self) -> dict[str, object]:
        return {"t": self.t, "node": self.node, "what": self.what, "actor": self.actor}


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"no {path.name} at {path}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError:
            if number == len(lines):
                continue  # cut short by a writer that was stopped mid-line
            raise UsageError(f"{path}:{number}: not JSON") from None


@dataclass(frozen=True, slots=True)
class PowerTask:
    t: float
    vm: str
    task: str
    user: str
    changes: bool
    """Whether the task was going to change the VM's power when it was asked for."""


def read_power_history(path: Path) -> list[PowerChange]:
    return [
        PowerChange(float(r["t"]), str(r["vm"]), bool(r["running"]), str(r.get("cause", "")))
        for _n, r in _json_lines(path)
        if "running" in r
    ]


def read_power_tasks(path: Path) -> list[PowerTask]:
    return [
        PowerTask(float(r["t"]), str(r["vm"]), str(r["task"]), str(r["user"]), bool(r["changes"]))
        for _n, r in _json_lines(path)
        if "task" in r
    ]


STOPS = frozenset({"qmstop", "hastop", "qmshutdown"})


def fenced_twice(
    tasks: list[PowerTask], history: list[PowerChange], user: str, since: float = 0.0
) -> list[tuple[str, float, float]]:
    """(vm, first, second) for every VM that ``user`` stopped twice in one death: two stop tasks
    that each would turn it off, with no power-on between them. A retry after a stop that a
    fault swallowed is not one (that task changed nothing)."""
    out = []
    by_vm: dict[str, list[PowerTask]] = {}
    for task in tasks:
        if task.user == user and task.task in STOPS and task.changes and task.t >= since:
            by_vm.setdefault(task.vm, []).append(task)
    for vm, stops in by_vm.items():
        starts = [c.t for c in history if c.vm == vm and c.running]
        for first, second in itertools.pairwise(stops):
            if not any(first.t < s < second.t for s in starts):
                out.append((vm, first.t, second.t))
    return out


def running_at(history: list[PowerChange], vm: str, t: float) -> bool:
    """Whether ``vm`` was running at ``t``: the lab starts every VM running."""
    state = True
    for change in history:
        if change.vm != vm:
            continue
        if change.t > t:
            break
        state = change.running
    return state


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _release(event: dict[str, Any]) -> Release | None:
    """The release an audit event records, if it records one (and it succeeded)."""
    code = int((event.get("responseStatus") or {}).get("code") or 0)
    if not 200 <= code < 300:
        return None
    ref = event.get("objectRef") or {}
    resource, verb = ref.get("resource"), event.get("verb")
    actor = str((event.get("user") or {}).get("username", ""))
    at = _epoch(str(event.get("requestReceivedTimestamp")))
    request = event.get("requestObject") or {}
    response = event.get("responseObject") or {}
    if resource == "nodes" and verb in ("patch", "update") and not ref.get("subresource"):
        if OUT_OF_SERVICE in json.dumps(request):
            return Release(at, str(ref.get("name")), "out-of-service taint", actor)
        return None
    if resource == "pods" and verb == "delete" and not ref.get("subresource"):
        forced = request.get("gracePeriodSeconds") == 0 or "gracePeriodSeconds=0" in str(
            event.get("requestURI", "")
        )
        node = (response.get("spec") or {}).get("nodeName")
        if forced and node:
            what = f"force-deleted pod {ref.get('namespace')}/{ref.get('name')}"
            return Release(at, str(node), what, actor)
        return None
    if resource == "volumeattachments" and verb == "delete":
        node = (response.get("spec") or {}).get("nodeName")
        if node:
            return Release(at, str(node), f"deleted VolumeAttachment {ref.get('name')}", actor)
    return None


def read_releases(path: Path, since: float | None = None) -> list[Release]:
    """Releases by anyone but Kubernetes' own components and the lab's kubelets: a kubelet
    deleting the pods it stopped, or the pod GC acting on a taint, is not a decision to release
    (the taint itself is checked)."""
    out = []
    for _n, event in _json_lines(path):
        actor = str((event.get("user") or {}).get("username", ""))
        if actor.startswith("system:") or actor == AGENT.common_name:
            continue
        release = _release(event)
        if release is not None and (since is None or release.t >= since):
            out.append(release)
    return out


def released_while_running(releases: list[Release], history: list[PowerChange]) -> list[Release]:
    """Every release whose node's VM read running when the API server received it."""
    return [r for r in releases if running_at(history, r.node, r.t)]
