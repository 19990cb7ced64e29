"""Time from a hard power-off to Traefik Running elsewhere, three ways, side by side.

Each variant gets its own `tazlab` lab (real profile by default: upstream timings) and they run
at the same time, so one run takes as long as the slowest variant (about 12 minutes):

- nothing:   let Kubernetes alone handle it (taint eviction, then the 6-minute force-detach);
- longhorn:  Longhorn's `node-down-pod-deletion-policy` style: force-delete the pod as soon as
             it is Terminating on a down node (after the 300 s toleration);
- heal:      `fireproof heal node NODE --yes` as soon as the node is NotReady.

Usage: python benchmarks/heal_vs_waiting.py [real|fast] [CAP_SECONDS]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _lab import FIREPROOF, running_lab


def kubectl(state_dir: Path, *args: str) -> Any:
    done = subprocess.run(
        [FIREPROOF, "lab", "kubectl", "--state-dir", str(state_dir), "--", *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(done.stdout) if done.returncode == 0 else {}


def traefik_pods(state_dir: Path) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl(
        state_dir, "get", "pods", "-n", "traefik", "-l", "app.kubernetes.io/name=traefik"
    ).get("items", [])
    return items


def ready(state_dir: Path, node: str) -> str:
    conditions = kubectl(state_dir, "get", "node", node).get("status", {}).get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "Unknown")


def running_elsewhere(state_dir: Path, node: str) -> bool:
    return any(
        p["status"].get("phase") == "Running"
        and p["spec"].get("nodeName") != node
        and not p["metadata"].get("deletionTimestamp")
        for p in traefik_pods(state_dir)
    )


def run_variant(name: str, profile: str, cap: float, results: dict[str, dict[str, Any]]) -> None:
    marks: dict[str, Any] = {}
    with running_lab("--profile", profile) as state_dir:
        env = {**os.environ, "FIREPROOF_LAB_DIR": str(state_dir), "XDG_STATE_HOME": str(state_dir)}
        node = traefik_pods(state_dir)[0]["spec"]["nodeName"]
        subprocess.run(
            [FIREPROOF, "lab", "power-off", node], env=env, capture_output=True, check=True
        )
        t0 = time.monotonic()
        acted = False

        def stamp(label: str) -> None:
            if label not in marks:
                marks[label] = round(time.monotonic() - t0, 1)
                print(f"  [{name}] {label} at {marks[label]} s", flush=True)

        while time.monotonic() - t0 < cap:
            if ready(state_dir, node) != "True":
                stamp("NotReady")
                if name == "heal" and not acted:
                    acted = True
                    subprocess.run(
                        [FIREPROOF, "heal", "node", node, "--lab", "--yes"],
                        env=env,
                        capture_output=True,
                        timeout=cap,
                    )
            old = [p for p in traefik_pods(state_dir) if p["spec"].get("nodeName") == node]
            if any(p["metadata"].get("deletionTimestamp") for p in old):
                stamp("Terminating")
                if name == "longhorn":
                    for pod in old:
                        subprocess.run(
                            [
                                FIREPROOF,
                                "lab",
                                "kubectl",
                                "--",
                                "delete",
                                "pod",
                                "-n",
                                "traefik",
                                pod["metadata"]["name"],
                                "--force",
                                "--grace-period=0",
                            ],
                            env=env,
                            capture_output=True,
                        )
                    stamp("force-deleted")
            if running_elsewhere(state_dir, node):
                stamp("Running elsewhere")
                break
            time.sleep(1)
    results[name] = marks


def main() -> None:
    profile = sys.argv[1] if len(sys.argv) > 1 else "real"
    cap = float(sys.argv[2]) if len(sys.argv) > 2 else 1200.0
    variants = ("nothing", "longhorn", "heal")
    results: dict[str, dict[str, Any]] = {}
    threads = [
        threading.Thread(target=run_variant, args=(v, profile, cap, results)) for v in variants
    ]
    for thread in threads:
        thread.start()
        time.sleep(5)  # stagger the lab starts on 2 cores
    for thread in threads:
        thread.join()
    print(f"\npower-off -> Traefik Running on another node, {profile} profile (cap {cap:.0f} s)")
    print(f"{'variant':<10}{'NotReady':>10}{'Terminating':>13}{'Running':>10}{'vs longhorn':>13}")
    base = results.get("longhorn", {}).get("Running elsewhere")
    for name in variants:
        marks = results.get(name, {})
        running = marks.get("Running elsewhere")
        ratio = f"{running / base:.3f}x" if running and base else "-"
        print(
            f"{name:<10}{marks.get('NotReady', '-'):>10}{marks.get('Terminating', '-'):>13}"
            f"{running if running is not None else 'never':>10}{ratio:>13}"
        )


if __name__ == "__main__":
    main()
