"""The fault campaign's faults: drawn from a seed, injected and cleared the way a user would
(the lab's CLI, signals to processes), each run independent of the others.

A run is one fault or a combination of two. Every draw comes from ``random.Random(f"{seed}:{run}")``
so that a run found violating can be replayed alone (``--seed S --only RUN``).
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fireproof.lab.proxmox.model import FaultKind

from _lab import FIREPROOF

PVE_FAULTS = tuple(
    str(kind)
    for kind in FaultKind
    if kind not in (FaultKind.LOCKED, FaultKind.STOP_WARNINGS)  # not in the list
)
BMC_FAULTS = ("unreachable", "auth-failure", "ignore-off")
HOST_FAULTS = ("host-off", "host-hang")
KINDS = (
    "power-off",
    "partition",
    *HOST_FAULTS,
    *(f"pve:{k}" for k in PVE_FAULTS),
    *(f"bmc:{k}" for k in BMC_FAULTS),
    "apiserver-stop",
    "guard-kill",
    "comes-back",
    "storm",
)


PRIMARY = (
    "power-off",
    "partition",
    "host-off",
    "host-hang",
    "pve",
    "apiserver-stop",
    "guard-kill",
    "comes-back",
    "storm",
)


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds that scale with the lab's profile."""

    hold: float
    """How long the faults last before the campaign clears them."""
    settle: float
    """How long after the clear everything must be recovered (invariant 4's budget)."""
    pve_delay: tuple[float, float]
    pve_hold: tuple[float, float]
    come_back: tuple[float, float]
    """A partition shorter than guard's lease staleness: the node comes back by itself."""
    api_stop: tuple[float, float]
    kill_delay: tuple[float, float]


TIMINGS = {
    "fast": Timing(22, 180, (0, 8), (3, 15), (1.5, 3), (10, 40), (0, 10)),
    "real": Timing(110, 600, (30, 45), (10, 40), (10, 20), (10, 40), (30, 50)),
}


@dataclass(slots=True)
class Fault:
    kind: str
    target: str = ""
    """A node, a Proxmox host, or empty."""
    delay: float = 0.0
    """Seconds after the run's start."""
    hold: float = 0.0
    """Seconds it lasts (0: until the run's faults are cleared)."""
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "target": self.target,
            "delay": round(self.delay, 2),
            "hold": round(self.hold, 2),
            **self.extra,
        }


@dataclass(frozen=True, slots=True)
class LabShape:
    workers: tuple[str, ...]
    hosts: dict[str, tuple[str, ...]]
    """Proxmox host -> the nodes whose VMs it runs."""
    vmids: dict[str, int]
    max_unhealthy: int
    survivable: tuple[str, ...] = ()
    """Hosts whose loss keeps etcd's quorum (a majority of the control planes elsewhere): losing
    the others is a total API outage no remediator can act in, so the campaign does not draw
    them."""


def draw(rng: random.Random, shape: LabShape, timing: Timing) -> list[Fault]:
    """One fault, or two that make sense together, for one run."""
    primary = rng.choice([p for p in PRIMARY if shape.survivable or p not in HOST_FAULTS])
    workers = list(shape.workers)
    rng.shuffle(workers)
    if primary == "storm":
        victims = workers[: shape.max_unhealthy + 1]
        return [Fault("storm", ",".join(sorted(victims)))]
    if primary == "comes-back":
        return [Fault("comes-back", workers[0], hold=rng.uniform(*timing.come_back))]
    if primary in HOST_FAULTS:
        host = Fault(primary, rng.choice(sorted(shape.survivable)))
        if rng.random() < 0.5:
            # The BMC fails while guard needs it, then recovers: nothing may move meanwhile.
            bmc = Fault(
                f"bmc:{rng.choice(BMC_FAULTS)}",
                host.target,
                hold=rng.uniform(*timing.pve_hold),
            )
            return [host, bmc]
        return [host]
    node_fault = Fault(rng.choice(["power-off", "partition"]), workers[0])
    if primary == "pve":
        return [node_fault, _pve(rng, node_fault.target, shape, timing)]
    if primary == "apiserver-stop":
        return [
            node_fault,
            Fault(
                "apiserver-stop",
                delay=rng.uniform(0, timing.pve_delay[1]),
                hold=rng.uniform(*timing.api_stop),
            ),
        ]
    if primary == "guard-kill":
        return [node_fault, Fault("guard-kill", delay=rng.uniform(*timing.kill_delay))]
    node_fault = Fault(primary, workers[0])
    if rng.random() < 0.5:
        second = rng.choice(["power-off", "partition", "pve", "apiserver-stop", "guard-kill"])
        if second in ("power-off", "partition"):
            return [node_fault, Fault(second, workers[1], delay=rng.uniform(0, 5))]
        if second == "pve":
            return [node_fault, _pve(rng, workers[0], shape, timing)]
        if second == "apiserver-stop":
            hold = rng.uniform(*timing.api_stop)
            return [node_fault, Fault("apiserver-stop", delay=rng.uniform(0, 8), hold=hold)]
        return [node_fault, Fault("guard-kill", delay=rng.uniform(*timing.kill_delay))]
    return [node_fault]


def _pve(rng: random.Random, node: str, shape: LabShape, timing: Timing) -> Fault:
    kind = rng.choice(PVE_FAULTS)
    host = next(h for h, nodes in shape.hosts.items() if node in nodes)
    extra: dict[str, object] = {}
    if kind in ("ignore-stop", "hang-tasks"):
        extra["vmid"] = shape.vmids[node]
    if kind == "host-unreachable":
        extra["host"] = host
    if kind == "latency":
        extra["seconds"] = round(rng.uniform(1, 4), 1)
    return Fault(
        f"pve:{kind}",
        node,
        delay=rng.uniform(*timing.pve_delay),
        hold=rng.uniform(*timing.pve_hold),
        extra=extra,
    )


def killed_nodes(faults: list[Fault], shape: LabShape, lease_stale: float) -> set[str]:
    """The nodes a run's faults take down (the ones guard may act on). A node meant to come
    back by itself counts when its partition may have lasted ``lease_stale`` seconds after all
    (the lab's commands are processes: under load, the reconnect can come seconds late)."""
    out: set[str] = set()
    for f in faults:
        if f.kind == "comes-back" and float(str(f.extra.get("cut_at_most", 0))) >= lease_stale:
            out.add(f.target)
        if f.kind in ("power-off", "partition"):
            out.add(f.target)
        elif f.kind == "storm":
            out.update(f.target.split(","))
        elif f.kind in HOST_FAULTS:
            out.update(shape.hosts[f.target])
    return out


def domains_of(faults: list[Fault], killed: set[str], shape: LabShape) -> dict[str, str]:
    """Node -> failure domain: the nodes a host fault took down are one (the host)."""
    out = {node: f"node/{node}" for node in killed}
    for f in faults:
        if f.kind in HOST_FAULTS:
            out.update(dict.fromkeys(shape.hosts[f.target], f"host/{f.target}"))
    return out


# -- doing it --------------------------------------------------------------------------------


def lab_cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FIREPROOF, "lab", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class Injector:
    """Injects one run's faults on their schedule, and clears all of them."""

    state_dir: Path
    kill_leader: Callable[[], str | None]
    log: Callable[[str], None]
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _api_stopped: bool = False

    def start(self, faults: list[Fault]) -> float:
        t0 = time.time()
        for fault in faults:
            thread = threading.Thread(target=self._one, args=(fault, t0), daemon=True)
            thread.start()
            self._threads.append(thread)
        return t0

    def _one(self, fault: Fault, t0: float) -> None:
        if self._stop.wait(max(0.0, t0 + fault.delay - time.time())):
            return
        start = time.time()
        self._inject(fault)
        if fault.hold > 0:
            self._stop.wait(fault.hold)
            self._undo(fault)
            # The longest the fault can have lasted: from before it was asked for until the
            # undo had returned.
            fault.extra["cut_at_most"] = round(time.time() - start, 2)

    def _inject(self, fault: Fault) -> None:
        kind, target = fault.kind, fault.target
        if kind == "power-off":
            lab_cli(self.state_dir, "power-off", target)
        elif kind == "storm":
            # A rack losing power: every victim at the same moment, not one after the other.
            cuts = [
                threading.Thread(target=lab_cli, args=(self.state_dir, "power-off", node))
                for node in target.split(",")
            ]
            for cut in cuts:
                cut.start()
            for cut in cuts:
                cut.join()
        elif kind in ("partition", "comes-back"):
            lab_cli(self.state_dir, "partition", target)
        elif kind in HOST_FAULTS:
            lab_cli(self.state_dir, kind, target)
        elif kind.startswith("bmc:"):
            lab_cli(self.state_dir, "bmc-fault", target, kind[4:])
        elif kind.startswith("pve:"):
            args = ["fault", "add", kind[4:]]
            for key in ("host", "vmid", "seconds"):
                if key in fault.extra:
                    args += [f"--{key}", str(fault.extra[key])]
            lab_cli(self.state_dir, *args)
        elif kind == "apiserver-stop":
            # A real outage: the process is gone and every client is refused. (A SIGSTOPped
            # apiserver keeps its connections open and left kube-controller-manager's informers
            # stale for good afterwards, which no real outage does.)
            lab_cli(self.state_dir, "apiserver", "stop")
            self._api_stopped = True
        elif kind == "guard-kill":
            killed = self.kill_leader()
            fault.extra["killed"] = killed or "no leader"
        self.log(f"    + {kind} {target}".rstrip())

    def _undo(self, fault: Fault) -> None:
        kind, target = fault.kind, fault.target
        if kind == "comes-back":
            lab_cli(self.state_dir, "unpartition", target)
        elif kind.startswith("pve:"):
            lab_cli(self.state_dir, "fault", "clear")
        elif kind.startswith("bmc:"):
            lab_cli(self.state_dir, "bmc-fault", target, "none")
        elif kind == "apiserver-stop":
            self._continue_apiserver()
        self.log(f"    - {kind} {target}".rstrip())

    def _continue_apiserver(self) -> None:
        if self._api_stopped:
            lab_cli(self.state_dir, "apiserver", "start")
            self._api_stopped = False

    def clear(self, faults: list[Fault]) -> float:
        """Clear every fault of the run (the held ones end early); returns when it began."""
        began = time.time()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=150)
        self._continue_apiserver()
        lab_cli(self.state_dir, "fault", "clear")
        for fault in faults:
            if fault.kind.startswith("bmc:"):
                lab_cli(self.state_dir, "bmc-fault", fault.target, "none")
        for fault in faults:
            if fault.kind in HOST_FAULTS:
                lab_cli(self.state_dir, "host-on", fault.target)
            elif fault.kind in ("partition", "comes-back"):
                lab_cli(self.state_dir, "unpartition", fault.target)
        for fault in faults:
            if fault.kind in ("power-off", "storm", "partition"):
                for node in fault.target.split(","):
                    lab_cli(self.state_dir, "power-on", node)
        return began
