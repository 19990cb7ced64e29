"""`fireproof doctor` on a big lab: wall time, peak memory and API requests.

Starts a `tazlab` lab with 500 workers (real profile: leases every 10 s, so the agent keeps up),
measures the doctor on it, then adds 10,000 pods (bound to the workers directly, as after a
scheduler pass; the simulated kubelets run them) and measures again, side by side with a run
of only the API-path checks. Usage: python benchmarks/doctor_scale.py [WORKERS] [PODS]
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Pod

from fireproof.kube import async_client, load_kubeconfig, sync_client

from _lab import FIREPROOF, running_lab

# A fork inherits its parent's resident pages as its own peak RSS until it execs: this process,
# holding 10k pods, would lend the doctor its size. A small interpreter in between forks the
# doctor from almost nothing and reports the child's own peak (KiB) on its last stderr line.
PEAK_OF_CHILD = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:], stderr=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def measure(state_dir: Path, *args: str) -> dict[str, Any]:
    out = state_dir / "doctor.json"
    argv = [FIREPROOF, "doctor", "--config", str(state_dir / "fireproof.yaml"), "-o", "json"]
    start = time.monotonic()
    with out.open("w") as sink:
        done = subprocess.run(
            [sys.executable, "-c", PEAK_OF_CHILD, *argv, *args],
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"doctor failed with exit {done.returncode}")
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    report = json.loads(out.read_text())
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "requests": report["apiRequests"],
        "findings": sum(len(c["findings"]) for c in report["checks"]),
    }


def add_pods(state_dir: Path, workers: list[str], count: int) -> float:
    """Create the pods from one thread with asyncio (the HTTP client is not thread-safe)."""
    config = load_kubeconfig(state_dir / "kubeconfig")
    sync_client(config).apply(Namespace(metadata=ObjectMeta(name="bench")), field_manager="bench")

    async def create_all() -> None:
        client = async_client(config, timeout=60)
        gate = asyncio.Semaphore(16)

        async def create(i: int) -> None:
            pod = Pod(
                metadata=ObjectMeta(
                    name=f"p-{i:05d}", namespace="bench", labels={"app": f"a{i % 50}"}
                ),
                spec=PodSpec(
                    nodeName=workers[i % len(workers)],
                    containers=[Container(name="main", image="bench:1")],
                ),
            )
            async with gate:
                await client.create(pod)

        await asyncio.gather(*(create(i) for i in range(count)))
        await client.close()

    start = time.monotonic()
    asyncio.run(create_all())
    return time.monotonic() - start


def running(client: Client) -> int:
    return sum(
        1 for p in client.list(Pod, namespace="bench") if p.status and p.status.phase == "Running"
    )


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    pods = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    t0 = time.monotonic()
    with running_lab("--profile", "real", "--workers", str(workers)) as state_dir:
        print(f"lab with {workers} workers up in {time.monotonic() - t0:.0f} s", flush=True)
        client = sync_client(load_kubeconfig(state_dir / "kubeconfig"), timeout=60)
        names = [f"tazlab-worker-{i + 1:02d}" for i in range(workers)]
        rows = {"empty: all checks": measure(state_dir)}
        created = add_pods(state_dir, names, pods)
        print(f"created {pods} pods in {created:.0f} s", flush=True)
        deadline = time.monotonic() + 900
        while (now := running(client)) < pods and time.monotonic() < deadline:
            print(f"  {now} pods Running", flush=True)
            time.sleep(15)
        rows[f"{pods} pods: all checks"] = measure(state_dir)
        rows[f"{pods} pods: API path only"] = measure(
            state_dir, "--check", "FP-A1", "--check", "FP-A2"
        )
        rows[f"{pods} pods: namespace bench"] = measure(state_dir, "--namespace", "bench")
    print(f"\nfireproof doctor on {workers + 7} nodes")
    print(f"{'variant':<30}{'wall s':>8}{'peak MiB':>10}{'requests':>10}{'findings':>10}")
    for name, row in rows.items():
        print(
            f"{name:<30}{row['wall_s']:>8}{row['peak_rss_mib']:>10}{row['requests']:>10}"
            f"{row['findings']:>10}"
        )
    full, base = rows[f"{pods} pods: all checks"], rows["empty: all checks"]
    print(
        f"ratio {pods} pods / empty: wall x{full['wall_s'] / base['wall_s']:.2f}, "
        f"requests x{full['requests'] / base['requests']:.2f}"
    )


if __name__ == "__main__":
    main()
