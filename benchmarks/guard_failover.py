"""guard installed by its Helm chart, and the node under its leader powered off.

    python benchmarks/guard_failover.py [--runs N] [--profile real|fast] [--json OUT]

The chart goes into a lab with `fireproof lab helm` and the values the lab writes; the lab runs
both guard replicas as real processes under the chart's RBAC. Each run puts Traefik (one
replica, a ReadWriteOnce volume) on a worker and powers that worker's VM off, in two variants
measured side by side:

- ``leader-dies``: the worker also runs the guard leader. The other replica must take the Lease
  (its holder is the pod's name) before it can fence and release the node that killed its leader.
- ``leader-survives``: the worker runs no guard replica; the leader heals it.

Figures: seconds from the power-off to Traefik Running and Ready on another node, and (for
``leader-dies``) to the Lease's new holder; medians per variant and their ratio. After every run
the ledger check must find no split brain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightkube
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Pod

from _lab import FIREPROOF, running_lab

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "fireproof"
NAMESPACE = "fireproof"
TRAEFIK = ("traefik", "app.kubernetes.io/name=traefik")
VARIANTS = ("leader-dies", "leader-survives")
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"
BUDGET = {"fast": 120.0, "real": 600.0}


def lab(state_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``fireproof lab ARGS`` on this lab (``--state-dir`` goes before a ``--``)."""
    cut = args.index("--") if "--" in args else len(args)
    argv = [*args[:cut], "--state-dir", str(state_dir), *args[cut:]]
    return subprocess.run(
        [FIREPROOF, "lab", *argv], capture_output=True, text=True, timeout=timeout
    )


def say(message: str) -> None:
    print(message, flush=True)


def ready(pod: Pod) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def live(pods: list[Pod]) -> list[Pod]:
    return [p for p in pods if p.metadata and p.metadata.deletionTimestamp is None]


class ChartLab:
    def __init__(self, state_dir: Path, client: lightkube.Client) -> None:
        self.state_dir = state_dir
        self.client = client

    def guard_pods(self) -> dict[str, str]:
        """Live guard pods -> their nodes."""
        pods = self.client.list(Pod, namespace=NAMESPACE)
        return {p.metadata.name: p.spec.nodeName for p in live(list(pods)) if p.metadata and p.spec}  # type: ignore[misc]

    def holder(self) -> str | None:
        lease = self.client.get(Lease, NAMESPACE, namespace=NAMESPACE)
        return lease.spec.holderIdentity if lease.spec else None

    def traefik(self) -> list[Pod]:
        return live(
            list(
                self.client.list(
                    Pod, namespace=TRAEFIK[0], labels={"app.kubernetes.io/name": "traefik"}
                )
            )
        )

    def workers(self) -> list[str]:
        return sorted(
            n.metadata.name
            for n in self.client.list(Node)
            if n.metadata and n.metadata.name and "worker" in n.metadata.name
        )

    def wait(self, what: str, probe: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = probe()
            except lightkube.ApiError:
                found = None
            if found:
                return found
            time.sleep(0.2)
        raise SystemExit(f"timed out waiting for {what}")

    def settled(self) -> bool:
        """Two guard pods Ready on two nodes, one of them the Lease's holder; Traefik Ready;
        every node Ready and schedulable."""
        pods = live(list(self.client.list(Pod, namespace=NAMESPACE)))
        if len(pods) != 2 or not all(ready(p) for p in pods):
            return False
        names = {p.metadata.name for p in pods if p.metadata}
        if self.holder() not in names:
            return False
        if not any(ready(p) for p in self.traefik()):
            return False
        for node in self.client.list(Node):
            conditions = (node.status.conditions if node.status else None) or []
            if not any(c.type == "Ready" and c.status == "True" for c in conditions):
                return False
            taints = [t.key for t in (node.spec.taints if node.spec else None) or []]
            if node.spec and node.spec.unschedulable:
                return False
            if any(t != CONTROL_PLANE_TAINT for t in taints):
                return False
        return True

    def move_traefik(self, target: str) -> None:
        """Put Traefik on ``target`` the way a person would: cordon the others, delete the pod."""
        current = [p for p in self.traefik() if p.spec and p.spec.nodeName == target and ready(p)]
        if current:
            return
        others = [w for w in self.workers() if w != target]
        for node in others:
            self.kubectl("cordon", node)
        try:
            self.kubectl("-n", TRAEFIK[0], "delete", "pod", "-l", TRAEFIK[1], "--wait=false")
            self.wait(
                f"Traefik on {target}",
                lambda: [
                    p for p in self.traefik() if p.spec and p.spec.nodeName == target and ready(p)
                ],
                300,
            )
        finally:
            for node in others:
                self.kubectl("uncordon", node)

    def kubectl(self, *args: str) -> None:
        lab(self.state_dir, "kubectl", "--", *args)


def one_run(chart: ChartLab, variant: str, profile: str) -> dict[str, Any]:
    chart.wait("a settled lab", chart.settled, BUDGET[profile] * 2)
    guards = chart.guard_pods()
    leader = chart.holder()
    assert leader is not None
    if variant == "leader-dies":
        target = guards[leader]
    else:
        free = [w for w in chart.workers() if w not in guards.values()]
        target = free[0]
    chart.move_traefik(target)
    chart.wait("a settled lab", chart.settled, BUDGET[profile] * 2)
    leader = chart.holder()
    started, requested = time.monotonic(), time.time()
    lab(chart.state_dir, "power-off", target)
    new_leader_at = None
    while time.monotonic() - started < BUDGET[profile]:
        holder = chart.holder()
        if new_leader_at is None and holder and holder != leader:
            new_leader_at = round(time.monotonic() - started, 1)
        moved = [p for p in chart.traefik() if p.spec and p.spec.nodeName != target and ready(p)]
        if moved:
            break
        time.sleep(0.2)
    else:
        moved = []
    traefik_at = round(time.monotonic() - started, 1) if moved else None
    # An HA-managed VM goes off some seconds after its hastop (Proxmox HA): the emulator's power
    # history says when, so both variants are also compared from the moment the VM was off.
    off_at = vm_off_after(chart.state_dir, target, requested)
    result = {
        "variant": variant,
        "node": target,
        "vm_off_seconds": off_at,
        "traefik_after_vm_off_seconds": (
            round(traefik_at - off_at, 1) if traefik_at is not None and off_at is not None else None
        ),
        "leader_before": leader,
        "leader_after": chart.holder(),
        "new_leader_seconds": new_leader_at,
        "traefik_running_seconds": traefik_at,
    }
    lab(chart.state_dir, "power-on", target)
    check = lab(chart.state_dir, "ledger", "check")
    result["split_brain"] = check.returncode != 0
    if result["split_brain"]:
        say(check.stdout + check.stderr)
    return result


def vm_off_after(state_dir: Path, node: str, since: float) -> float | None:
    for line in (state_dir / "logs" / "power.jsonl").read_text().splitlines():
        change = json.loads(line)
        if change.get("vm") == node and change.get("running") is False and change["t"] >= since:
            return round(float(change["t"]) - since, 1)
    return None


def install(state_dir: Path) -> None:
    values = state_dir / "guard-values.yaml"
    done = lab(
        state_dir, "helm", "--", "install", "fireproof", str(CHART), "-n", NAMESPACE,
        "-f", str(values), "--wait", "--timeout", "5m",
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"helm install failed: {done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant")
    parser.add_argument("--profile", choices=sorted(BUDGET), default="real")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with running_lab("--profile", args.profile) as state_dir:
        install(state_dir)
        client = lightkube.Client(lightkube.KubeConfig.from_file(state_dir / "kubeconfig"))
        chart = ChartLab(state_dir, client)
        say(f"lab: {state_dir}, profile {args.profile}")
        for run in range(1, args.runs + 1):
            order = VARIANTS if run % 2 else tuple(reversed(VARIANTS))  # neither always first
            for variant in order:
                result = one_run(chart, variant, args.profile)
                results.append(result)
                say(
                    f"run {run} {variant}: {result['node']} "
                    f"off after {result['vm_off_seconds']} s, "
                    f"Traefik Running elsewhere after {result['traefik_running_seconds']} s "
                    f"({result['traefik_after_vm_off_seconds']} s after the VM was off), Lease "
                    f"{result['leader_before']} -> {result['leader_after']} "
                    f"({result['new_leader_seconds']} s)"
                )
    return report(results, args)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> int:
    say("")
    medians: dict[str, dict[str, float | None]] = {}
    for variant in VARIANTS:
        mine = [r for r in results if r["variant"] == variant]
        medians[variant] = {}
        for key, label in (
            ("traefik_running_seconds", "from the power-off request"),
            ("traefik_after_vm_off_seconds", "from the VM off"),
        ):
            done = [r[key] for r in mine if r[key] is not None]
            medians[variant][key] = statistics.median(done) if done else None
            worst = max(done) if done else None
            median = medians[variant][key]
            say(f"{variant:16} Traefik Running elsewhere, {label}: median {median} s, "
                f"worst {worst} s ({len(done)}/{len(mine)})")  # fmt: skip
    for key in ("traefik_running_seconds", "traefik_after_vm_off_seconds"):
        dies, survives = medians["leader-dies"][key], medians["leader-survives"][key]
        if dies and survives:
            say(f"leader-dies / leader-survives ({key}): {dies / survives:.2f}x")
    failed = [r for r in results if r["traefik_running_seconds"] is None or r["split_brain"]]
    if args.json:
        args.json.write_text(json.dumps({"profile": args.profile, "runs": results}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
