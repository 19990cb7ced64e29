"""Does the drill's watch-based timeline keep up with a big cluster? Its lag, side by side on a
small lab (tazlab, 7 nodes) and a big one (500 workers), at upstream timings (`real` profile).

Two measures on each lab:
- the watch itself: for every node Lease renewal the drill's Watcher receives, the time between
  the kubelet's renewTime (microsecond precision, set by the writer) and its arrival; 500 nodes
  renew every 10 s, so the big lab streams about 50 Lease changes a second, plus Node status;
- a real drill (`fireproof drill run`, power-off of Traefik's worker, recovery: heal): every
  timeline entry's lag against the object's own timestamp (whole seconds in Kubernetes, so up
  to 1 s of it is truncation).

Usage: python benchmarks/drill_timeline_lag.py [WORKERS] [SECONDS]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fireproof.kube.watch import Change, Watcher

from _lab import FIREPROOF, running_lab

SPEC = """\
name: lag-traefik-power-off
target: {running: traefik/deployment/traefik}
fault: power-off
recovery: heal
timeout: 240s
slo:
  - {workload: traefik/deployment/traefik, running_elsewhere_within: 200s}
"""


def _renew(obj: dict[str, Any]) -> float | None:
    text = obj.get("spec", {}).get("renewTime")
    if not text:
        return None
    if isinstance(text, dt.datetime):
        return text.timestamp()
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


def watch_lag(state_dir: Path, seconds: float) -> dict[str, float]:
    lags: list[float] = []
    lock = threading.Lock()
    counts = {"changes": 0}

    def sink(change: Change) -> None:
        with lock:
            counts["changes"] += 1
            if change.kind == "Lease" and change.type == "MODIFIED":
                renewed = _renew(change.obj)
                if renewed is not None:
                    lags.append(change.at - renewed)

    watcher = Watcher(state_dir / "kubeconfig", None, sink)
    started = time.monotonic()
    if not watcher.start(timeout=120):
        raise SystemExit("the watches did not start")
    synced = time.monotonic() - started
    with lock:
        counts["changes"] = 0
    time.sleep(seconds)
    watcher.stop()
    with lock:
        ordered = sorted(lags)
    if not ordered:
        raise SystemExit("no Lease renewal observed")
    return {
        "initial list s": round(synced, 2),
        "changes/s": round(counts["changes"] / seconds, 1),
        "lease p50 ms": round(1000 * statistics.median(ordered), 1),
        "lease p95 ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
        "lease max ms": round(1000 * ordered[-1], 1),
    }


def drill_lag(state_dir: Path) -> dict[str, float]:
    spec = state_dir / "lag-drill.yaml"
    spec.write_text(SPEC)
    saved = state_dir / "lag-drill.json"
    env = {**os.environ, "FIREPROOF_LAB_DIR": str(state_dir), "XDG_STATE_HOME": str(state_dir)}
    subprocess.run(
        [FIREPROOF, "drill", "run", str(spec), "--lab", "--yes", "--save", str(saved)],
        env=env,
        capture_output=True,
        timeout=900,
    )
    if not saved.exists():
        return {}
    run = json.loads(saved.read_text())
    lags = sorted(e["lag"] for e in run["timeline"] if e.get("lag") is not None)
    if not lags:
        return {"entries": len(run["timeline"])}
    return {
        "entries": len(run["timeline"]),
        "entry lag p50 s": round(statistics.median(lags), 2),
        "entry lag max s": round(lags[-1], 2),
        "verdict pass": 1.0 if run["verdict"] == "pass" else 0.0,
    }


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    rows: dict[str, dict[str, float]] = {}
    for name, extra in (
        ("tazlab (7 nodes)", []),
        (f"{workers + 3} nodes", ["--workers", str(workers)]),
    ):
        t0 = time.monotonic()
        with running_lab("--profile", "real", *extra) as state_dir:
            print(f"{name}: lab up in {time.monotonic() - t0:.0f} s", flush=True)
            time.sleep(20)  # every kubelet renews at least once
            rows[name] = {**watch_lag(state_dir, seconds), **drill_lag(state_dir)}
            print(f"  {rows[name]}", flush=True)
    keys = sorted({k for row in rows.values() for k in row})
    print(f"\ndrill timeline lag, real profile ({seconds:.0f} s of watching per lab)")
    print(f"{'measure':<20}" + "".join(f"{name:>22}" for name in rows))
    for key in keys:
        print(f"{key:<20}" + "".join(f"{row.get(key, float('nan')):>22}" for row in rows.values()))
    small, big = rows.values()
    if small.get("lease p50 ms") and big.get("lease p50 ms"):
        print(
            f"ratio big / small, lease p50 lag: x{big['lease p50 ms'] / small['lease p50 ms']:.2f}"
        )


if __name__ == "__main__":
    main()
