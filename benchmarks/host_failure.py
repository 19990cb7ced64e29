"""A whole Proxmox host dies: the time until every RWO workload of its nodes runs elsewhere, side
by side, at upstream timings (`real` profile).

Traefik and postgres-0 are placed on pve-02's workers (tazlab: pve-02 runs one of the three
control planes and two workers, so etcd keeps its quorum), then pve-02 loses power
(`lab host-off`) or hangs (`lab host-hang`: its power stays on, only its BMC can turn it off).
T+0 is the moment the lab's command returned. Variants, each on its own lab, side by side:
- guard-bmc:  `fireproof guard run` with the lab's fireproof.yaml, whose `hosts:` names each
              host's BMC (fence_ipmilan against the lab's real-IPMI BMCs);
- guard-none: the same guard without `hosts:`: nothing can prove the host off;
- nothing:    Kubernetes alone;
- guard-ha:   three Proxmox hosts (`lab up --hosts 3 --workers 5`), Proxmox HA, guard without
              `hosts:`: HA's acknowledged fence is the only proof (Traefik on worker-05, not
              HA-managed; postgres-0 on worker-02, HA-managed: HA restarts its VM elsewhere);
- ha-alone:   the same three hosts with Proxmox HA and no guard.
HA moves VMs for good, so each HA run gets a lab of its own.

Usage: python benchmarks/host_failure.py [--runs N] [--profile real|fast] [--cap SECONDS]
                                         [--variants V,...] (default guard-bmc,guard-ha,ha-alone;
                                          also guard-none, nothing)
                                         [--faults host-off,host-hang]
Prints each run, then the median and worst per variant and fault.
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

from guard_vs_peers import POSTGRES, TRAEFIK, kubectl, lab_cli, pods, restore, running_on

from _lab import FIREPROOF, running_lab

HOST = "pve-02"
WORKERS = tuple(f"tazlab-worker-0{i}" for i in range(1, 6))
HA_VARIANTS = ("guard-ha", "ha-alone")
THREE_HOSTS = ("--hosts", "3", "--workers", "5")
PLACEMENT = {
    # Both on pve-02's workers (tazlab: worker-02 and worker-04 on pve-02).
    "two-hosts": {"traefik": "tazlab-worker-02", "postgres": "tazlab-worker-04"},
    # Three hosts: worker-02 (HA-managed) and worker-05 (not) on pve-02.
    "three-hosts": {"traefik": "tazlab-worker-05", "postgres": "tazlab-worker-02"},
}
LOCK = threading.Lock()


def place(state_dir: Path, workload: tuple[str, str], node: str) -> None:
    """The workload onto ``node``: every other worker cordoned while its pod moves."""
    others = [w for w in WORKERS if w != node]
    for other in others:
        kubectl(state_dir, "cordon", other, output=False)
    try:
        where = running_on(state_dir, workload)
        if where and where[0] != node:
            for p in pods(state_dir, workload):
                kubectl(
                    state_dir, "delete", "pod", "-n", workload[0], p["metadata"]["name"],
                    "--wait=false", output=False,
                )  # fmt: skip
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            where = running_on(state_dir, workload)
            if where and where[0] == node:
                break
            time.sleep(2)
    finally:
        for other in others:
            kubectl(state_dir, "uncordon", other, output=False)


def hosts_now(state_dir: Path) -> dict[str, str]:
    """Node -> the Proxmox host its VM runs on now (HA moves them)."""
    done = subprocess.run(
        [FIREPROOF, "lab", "status", "-o", "json", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        return {n["name"]: n["hypervisor_host"] for n in json.loads(done.stdout)["nodes"]}
    except (ValueError, KeyError):
        return {}


def one_run(state_dir: Path, fault: str, cap: float, layout: str) -> dict[str, float | None]:
    for key, workload in (("traefik", TRAEFIK), ("postgres", POSTGRES)):
        place(state_dir, workload, PLACEMENT[layout][key])
    fault_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    lab_cli(state_dir, fault, HOST)
    t0 = time.monotonic()
    marks: dict[str, float | None] = {"traefik": None, "postgres": None}
    while time.monotonic() - t0 < cap and None in marks.values():
        hosts = hosts_now(state_dir)
        for key, workload in (("traefik", TRAEFIK), ("postgres", POSTGRES)):
            if marks[key] is None and any(
                _serving_elsewhere(p, hosts, fault_at) for p in pods(state_dir, workload)
            ):
                marks[key] = round(time.monotonic() - t0, 1)
        time.sleep(0.5)
    return marks


def _serving_elsewhere(pod: dict[str, Any], hosts: dict[str, str], since: dt.datetime) -> bool:
    """Running and Ready since the fault, on a node whose VM is not on the dead host: a new pod
    elsewhere, or the same pod restarted on its node's VM that HA moved to another host."""
    status = pod["status"]
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
    node = pod["spec"].get("nodeName") or ""
    return (
        status.get("phase") == "Running"
        and not pod["metadata"].get("deletionTimestamp")
        and ready.get("status") == "True"
        and dt.datetime.fromisoformat(ready.get("lastTransitionTime", "1970-01-01T00:00:00Z"))
        >= since
        and hosts.get(node, HOST) != HOST
    )


def start_guard(state_dir: Path, with_bmc: bool) -> subprocess.Popen[bytes]:
    config = state_dir / "guard.yaml"
    doc: dict[str, Any] = yaml.safe_load((state_dir / "fireproof.yaml").read_text())
    if not with_bmc:
        doc.pop("hosts", None)
    config.write_text(yaml.safe_dump(doc))
    return subprocess.Popen(
        [FIREPROOF, "guard", "run", "--config", str(config), "--metrics-address", ""],
        stdout=subprocess.DEVNULL,
        stderr=(state_dir / "guard.log").open("w"),
        env={**os.environ, "XDG_STATE_HOME": str(state_dir)},
    )


def variant(
    name: str, args: argparse.Namespace, fault: str, out: dict[str, list[dict[str, Any]]]
) -> None:
    if name in HA_VARIANTS:
        # HA moves VMs for good: each run on a lab of its own.
        for _run in range(args.runs):
            with running_lab("--profile", args.profile, *THREE_HOSTS) as state_dir:
                measure(name, args, fault, out, state_dir, "three-hosts", count=1)
        return
    with running_lab("--profile", args.profile) as state_dir:
        measure(name, args, fault, out, state_dir, "two-hosts", count=args.runs)


def measure(
    name: str,
    args: argparse.Namespace,
    fault: str,
    out: dict[str, list[dict[str, Any]]],
    state_dir: Path,
    layout: str,
    count: int,
) -> None:
    guard = None
    if name.startswith("guard"):
        guard = start_guard(state_dir, with_bmc=name == "guard-bmc")
        # A guard that has been running for a while, as in production (a fresh one holds
        # lease-based detection for lease_stale_seconds).
        time.sleep(5 + (40 if args.profile == "real" else 10))
    try:
        for _run in range(count):
            marks = one_run(state_dir, fault, args.cap, layout)
            with LOCK:
                out.setdefault(name, []).append(marks)
                print(
                    f"  [{fault} {name} run {len(out[name])}] traefik {marks['traefik']} s, "
                    f"postgres {marks['postgres']} s",
                    flush=True,
                )
            lab_cli(state_dir, "host-on", HOST)
            restore(state_dir)
    finally:
        if guard is not None:
            guard.terminate()
            guard.wait(timeout=30)


def summary(fault: str, results: dict[str, list[dict[str, Any]]], cap: float) -> None:
    print(f"\n{fault} of {HOST} -> Running on another host (seconds; median / worst; "
          f"'never' = not within {cap:.0f} s)")  # fmt: skip
    print(f"{'variant':<12}{'traefik':>18}{'postgres':>18}{'both':>18}")
    for name, runs in results.items():
        cells = []
        for key in ("traefik", "postgres", "both"):
            if key == "both":
                values = [
                    None if r["traefik"] is None or r["postgres"] is None
                    else max(r["traefik"], r["postgres"])
                    for r in runs
                ]  # fmt: skip
            else:
                values = [r[key] for r in runs]
            done = [v for v in values if v is not None]
            if not done:
                cells.append("never")
            elif len(done) < len(values):
                cells.append(f"{statistics.median(done):.1f} / never")
            else:
                cells.append(f"{statistics.median(done):.1f} / {max(done):.1f}")
        print(f"{name:<12}{cells[0]:>18}{cells[1]:>18}{cells[2]:>18}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--profile", choices=("real", "fast"), default="real")
    parser.add_argument("--cap", type=float, default=600.0, help="seconds before a run is 'never'")
    parser.add_argument("--variants", default="guard-bmc,guard-ha,ha-alone")
    parser.add_argument("--faults", default="host-off,host-hang")
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    for fault in [f for f in args.faults.split(",") if f]:
        results: dict[str, list[dict[str, Any]]] = {}
        threads = [threading.Thread(target=variant, args=(n, args, fault, results)) for n in names]
        for thread in threads:
            thread.start()
            time.sleep(10)  # stagger the lab starts on 2 cores
        for thread in threads:
            thread.join()
        summary(fault, {n: results[n] for n in names if n in results}, args.cap)


if __name__ == "__main__":
    main()
