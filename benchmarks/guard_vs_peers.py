"""Power-off (and partition) to Traefik and postgres-0 Running elsewhere: guard against the
other ways a cluster gets there, side by side, at upstream timings (`real` profile).

Variants, each on its own `tazlab` lab, all running at the same time:
- guard:     `fireproof guard run` (restart_stopped: true), started before the fault;
- heal:      `fireproof heal node NODE --yes` the moment the node is NotReady (a person who
             reacts at once);
- longhorn:  Longhorn's node-down-pod-deletion-policy style: force-delete a pod as soon as it is
             Terminating on a down node (after the 300 s toleration);
- nothing:   Kubernetes alone (taint eviction, then the 6-minute force-detach).
The partition scenario runs guard only: the others never recover a partition safely.

Usage: python benchmarks/guard_vs_peers.py [--runs N] [--profile real|fast] [--cap SECONDS]
                                           [--variants guard,heal,longhorn,nothing]
                                           [--faults power-off,partition] [--labs K]
Prints each run, then the median and worst per variant and the ratios to guard.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from _lab import FIREPROOF, running_lab

TRAEFIK = ("traefik", "app.kubernetes.io/name=traefik")
POSTGRES = ("blog", "app=postgres")
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


def kubectl(state_dir: Path, *args: str, output: bool = True) -> Any:
    extra = ["-o", "json"] if output else []
    done = subprocess.run(
        [FIREPROOF, "lab", "kubectl", "--state-dir", str(state_dir), "--", *args, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if not output:
        return done.returncode
    return json.loads(done.stdout) if done.returncode == 0 else {}


def pods(state_dir: Path, workload: tuple[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl(
        state_dir, "get", "pods", "-n", workload[0], "-l", workload[1]
    ).get("items", [])
    return items


def running_on(state_dir: Path, workload: tuple[str, str]) -> tuple[str, str] | None:
    for p in pods(state_dir, workload):
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"):
            return str(p["spec"]["nodeName"]), str(p["metadata"]["uid"])
    return None


def ready(state_dir: Path, node: str) -> str:
    conditions = kubectl(state_dir, "get", "node", node).get("status", {}).get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "Unknown")


def lab_cli(state_dir: Path, *args: str) -> None:
    subprocess.run(
        [FIREPROOF, "lab", *args, "--state-dir", str(state_dir)], capture_output=True, timeout=120
    )


def restore(state_dir: Path) -> None:
    nodes = [n["metadata"]["name"] for n in kubectl(state_dir, "get", "nodes").get("items", [])]
    for node in nodes:
        lab_cli(state_dir, "unpartition", node)
        lab_cli(state_dir, "power-on", node)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        items = kubectl(state_dir, "get", "nodes").get("items", [])
        if items and all(
            next((c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready"), "")
            == "True"
            for n in items
        ):
            break
        time.sleep(2)
    for node in nodes:
        kubectl(state_dir, "taint", "node", node, f"{OUT_OF_SERVICE}-", output=False)
        kubectl(state_dir, "annotate", "node", node, "fireproof.io/remediation-", output=False)
        kubectl(state_dir, "uncordon", node, output=False)
    while time.monotonic() < deadline and not (
        running_on(state_dir, TRAEFIK) and running_on(state_dir, POSTGRES)
    ):
        time.sleep(2)


def power(state_dir: Path) -> dict[str, str]:
    done = subprocess.run(
        [FIREPROOF, "lab", "status", "-o", "json", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    nodes = json.loads(done.stdout)["nodes"] if done.returncode == 0 else []
    return {n["name"]: n["power"] for n in nodes}


def one_run(name: str, state_dir: Path, fault: str, cap: float) -> dict[str, float | None]:
    env = {**os.environ, "FIREPROOF_LAB_DIR": str(state_dir), "XDG_STATE_HOME": str(state_dir)}
    before = {w: running_on(state_dir, w) for w in (TRAEFIK, POSTGRES)}
    known = {w: {p["metadata"]["uid"] for p in pods(state_dir, w)} for w in (TRAEFIK, POSTGRES)}
    victims = sorted({b[0] for b in before.values() if b})
    verb = "power-off" if fault == "power-off" else "partition"
    fault_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sent = time.monotonic()
    hits = [
        subprocess.Popen(
            [FIREPROOF, "lab", verb, node, "--state-dir", str(state_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for node in victims
    ]
    # T+0 of a workload is the moment its node failed: a partition when the lab has applied it
    # (the agent answers once the kubelet is cut, so the command's exit is that moment, give or
    # take its few ms of exit; its start is up to a second earlier: the CLI's own start-up);
    # a power-off when the VM reads stopped (an HA-managed VM stops seconds after the request).
    failed: dict[str, float] = {}
    if fault != "power-off":
        for node, hit in zip(victims, hits, strict=True):
            hit.wait(timeout=120)
            failed[node] = time.monotonic()
    marks: dict[str, float | None] = {"traefik": None, "postgres": None}
    acted: set[str] = set()
    while time.monotonic() - sent < cap and None in marks.values():
        if len(failed) < len(victims):
            for node, state in power(state_dir).items():
                if node in victims and node not in failed and state == "stopped":
                    failed[node] = time.monotonic()
        for node in victims:
            if name == "heal" and node not in acted and ready(state_dir, node) != "True":
                acted.add(node)
                subprocess.run(
                    [FIREPROOF, "heal", "node", node, "--lab", "--yes", "--timeout", "5"],
                    env=env,
                    capture_output=True,
                    timeout=cap,
                )
        for key, workload in (("traefik", TRAEFIK), ("postgres", POSTGRES)):
            if name == "longhorn":
                for p in pods(state_dir, workload):
                    if (
                        p["metadata"].get("deletionTimestamp")
                        and p["spec"].get("nodeName") in victims
                    ):
                        kubectl(
                            state_dir,
                            "delete",
                            "pod",
                            "-n",
                            workload[0],
                            p["metadata"]["name"],
                            "--force",
                            "--grace-period=0",
                            output=False,
                        )
            origin = before[workload]
            if marks[key] is not None or origin is None or origin[0] not in failed:
                continue
            for p in pods(state_dir, workload):
                created = dt.datetime.fromisoformat(p["metadata"]["creationTimestamp"])
                if (
                    p["metadata"]["uid"] not in known[workload]
                    and created >= fault_at
                    and p["status"].get("phase") == "Running"
                    and not p["metadata"].get("deletionTimestamp")
                ):
                    marks[key] = round(time.monotonic() - failed[origin[0]], 1)
        time.sleep(0.5)
    for hit in hits:
        hit.wait(timeout=120)
    return marks


LOCK = threading.Lock()


def variant(
    name: str,
    args: argparse.Namespace,
    fault: str,
    out: dict[str, list[dict[str, float | None]]],
    runs: int,
) -> None:
    with running_lab("--profile", args.profile) as state_dir:
        guard = None
        if name == "guard":
            config = state_dir / "guard.yaml"
            doc = yaml.safe_load((state_dir / "fireproof.yaml").read_text())
            doc["guard"] = {"restart_stopped": True}
            config.write_text(yaml.safe_dump(doc))
            guard = subprocess.Popen(
                [FIREPROOF, "guard", "run", "--config", str(config), "--metrics-address", ""],
                stdout=subprocess.DEVNULL,
                stderr=(state_dir / "guard.log").open("w"),
                env={**os.environ, "XDG_STATE_HOME": str(state_dir)},
            )
            # A guard that has been running for a while, as in production: a fresh one holds
            # lease-based detection for lease_stale_seconds (it cannot tell whether an API
            # outage just ended).
            time.sleep(5 + (40 if args.profile == "real" else 10))
        try:
            for _run in range(runs):
                marks = one_run(name, state_dir, fault, args.cap)
                with LOCK:
                    out.setdefault(name, []).append(marks)
                    print(
                        f"  [{fault} {name} run {len(out[name])}] traefik {marks['traefik']} s, "
                        f"postgres {marks['postgres']} s",
                        flush=True,
                    )
                restore(state_dir)
        finally:
            if guard is not None:
                guard.terminate()
                guard.wait(timeout=30)


def summary(fault: str, results: dict[str, list[dict[str, float | None]]], cap: float) -> None:
    print(
        f"\n{fault} -> Running elsewhere (seconds; median / worst; "
        f"'never' = not within {cap:.0f} s)"
    )
    print(f"{'variant':<10}{'traefik':>18}{'postgres':>18}{'vs guard':>12}")
    base = None
    for name, runs in results.items():
        cells = []
        medians = []
        for key in ("traefik", "postgres"):
            values = [r[key] for r in runs]
            done = [v for v in values if v is not None]
            if len(done) < len(values) or not done:
                cells.append("never" if not done else f"{statistics.median(done):.1f} / never")
                continue
            medians.append(statistics.median(done))
            cells.append(f"{statistics.median(done):.1f} / {max(done):.1f}")
        median = max(medians) if len(medians) == 2 else None
        if name == "guard":
            base = median
        ratio = f"{median / base:.1f}x" if median and base else "-"
        print(f"{name:<10}{cells[0]:>18}{cells[1]:>18}{ratio:>12}")


def _shares(runs: int, labs: int) -> list[int]:
    labs = max(1, min(labs, runs))
    return [runs // labs + (1 if i < runs % labs else 0) for i in range(labs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--profile", choices=("real", "fast"), default="real")
    parser.add_argument("--cap", type=float, default=900.0, help="seconds before a run is 'never'")
    parser.add_argument("--variants", default="guard,heal,longhorn,nothing")
    parser.add_argument("--faults", default="power-off,partition")
    parser.add_argument(
        "--labs",
        type=int,
        default=1,
        help="labs per variant, the runs shared among them (the slow variants wait on timers)",
    )
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    faults = [f for f in args.faults.split(",") if f]
    for fault, chosen in (("power-off", names), ("partition", ["guard"])):
        if fault not in faults:
            continue
        results: dict[str, list[dict[str, float | None]]] = {}
        threads = [
            threading.Thread(target=variant, args=(n, args, fault, results, share))
            for n in chosen
            for share in _shares(args.runs, args.labs)
        ]
        for thread in threads:
            thread.start()
            time.sleep(10)  # stagger the lab starts on 2 cores
        for thread in threads:
            thread.join()
        summary(fault, {n: results[n] for n in chosen if n in results}, args.cap)
    print(
        "\npartition: heal, longhorn and nothing never recover a partitioned node safely "
        "(its VM keeps running; releasing its volumes would make two writers)."
    )


if __name__ == "__main__":
    main()
