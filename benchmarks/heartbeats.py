"""Heartbeat lag of the simulated kubelets under the fast profile, 10 vs 50 nodes.

For each size: start a lab, let it run for DURATION seconds, then report the gaps between
Lease renewals measured by the agent, the agent's CPU use, and the number of NodeNotReady
events the real node lifecycle controller emitted (any is a false NotReady: nothing was
powered off). Usage: python benchmarks/heartbeats.py [DURATION_SECONDS]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fireproof.kube import load_kubeconfig, sync_client
from fireproof.lab.lab import Lab

from _lab import cpu_seconds, lab_pid, running_lab


def not_ready_events(state_dir: Path) -> int:
    from lightkube.resources.core_v1 import Event

    client = sync_client(load_kubeconfig(state_dir / "kubeconfig"))
    return sum(
        1
        for e in client.list(Event, namespace="default")
        if e.reason == "NodeNotReady" and e.involvedObject.kind == "Node"
    )


def measure(nodes: int, duration: float) -> dict[str, float]:
    with running_lab("--profile", "fast", "--workers", str(nodes - 1)) as state_dir:
        lab = Lab(state_dir)
        agent = lab_pid(state_dir, "agent")
        apiserver = lab_pid(state_dir, "kube-apiserver")
        cpu0, api0, t0 = cpu_seconds(agent), cpu_seconds(apiserver), time.monotonic()
        time.sleep(duration)
        elapsed = time.monotonic() - t0
        stats = lab.heartbeats()
        agent_cpu = (cpu_seconds(agent) - cpu0) / elapsed
        api_cpu = (cpu_seconds(apiserver) - api0) / elapsed
        return {
            "nodes": nodes,
            "seconds": round(elapsed),
            "renewals": stats["renewals"],
            "failures": stats["failures"],
            "lag_p50": stats["lag_p50_seconds"],
            "lag_p99": stats["lag_p99_seconds"],
            "lag_max": stats["lag_max_seconds"],
            "grace": stats["grace_seconds"],
            "false_not_ready": not_ready_events(state_dir),
            "agent_cpu_pct": round(100 * agent_cpu, 1),
            "apiserver_cpu_pct": round(100 * api_cpu, 1),
        }


def main() -> None:
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 120.0
    rows = [measure(n, duration) for n in (10, 50)]
    cols = list(rows[0])
    print(f"heartbeat lag, fast profile (lease every 1 s, grace 5 s), {duration:.0f} s per size")
    print("  ".join(f"{c:>17}" for c in cols))
    for row in rows:
        print("  ".join(f"{row[c]:>17}" for c in cols))
    small, big = rows
    print(
        f"ratio 50/10 nodes: lag p99 x{(big['lag_p99'] + 1e-3) / (small['lag_p99'] + 1e-3):.2f}, "
        f"agent CPU x{big['agent_cpu_pct'] / max(small['agent_cpu_pct'], 0.1):.2f}, "
        f"renewals x{big['renewals'] / max(small['renewals'], 1):.2f}"
    )
    verdict = "PASS" if all(r["false_not_ready"] == 0 for r in rows) else "FAIL"
    headroom = big["grace"] - 1 - big["lag_max"]
    print(
        f"{verdict}: false NotReady events {[r['false_not_ready'] for r in rows]}; "
        f"worst renewal gap leaves {headroom:.2f} s of the grace period at 50 nodes"
    )
    if verdict == "FAIL":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
