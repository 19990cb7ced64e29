"""guard's steady-state cost and detection time on a small and a big lab, side by side.

For each size (real profile: kubelets renew every 10 s), the API server's own request counter
(``apiserver_request_total``) is read over a window without guard and over one with guard
running: guard's share is the difference. What guard receives (watch streams, GETs, Proxmox
answers) is the bytes it reads (``/proc/PID/io`` rchar), its CPU (% of one core) and RSS come
from /proc too. Then a worker's VM is powered off and the time until guard's
``FireproofFenced`` Event on it is taken, from the power-off request and from the moment the
VM read off.

Usage: python benchmarks/guard_scale.py [--workers 4,500] [--window 60]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from _lab import FIREPROOF, cli, cpu_seconds, running_lab

SAMPLE = re.compile(r"^apiserver_request_total\{[^}]*\} (\S+)$")


def say(message: str) -> None:
    print(message, flush=True)


def kubectl(state_dir: Path, *args: str) -> str:
    state = json.loads((state_dir / "lab.json").read_text())
    done = subprocess.run(
        [str(Path(state["bin_dir"]) / "kubectl"), "--kubeconfig", str(state_dir / "kubeconfig"),
         *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )  # fmt: skip
    return done.stdout


def requests_served(state_dir: Path) -> float:
    """Requests the API server has served so far, from its /metrics."""
    return sum(
        float(found.group(1))
        for line in kubectl(state_dir, "get", "--raw", "/metrics").splitlines()
        if (found := SAMPLE.match(line))
    )


def request_rate(state_dir: Path, window: float) -> float:
    before = requests_served(state_dir)
    time.sleep(window)
    return (requests_served(state_dir) - before) / window


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_guard(state_dir: Path, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    doc = yaml.safe_load((state_dir / "fireproof.yaml").read_text())
    doc["guard"] = {"lease_name": "guard-scale"}
    config = work / "guard.yaml"
    config.write_text(yaml.safe_dump(doc))
    port = free_port()
    process = subprocess.Popen(
        [FIREPROOF, "guard", "run", "--config", str(config), "--metrics-address",
         f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=(work / "guard.log").open("wb"),
        env={**os.environ, "XDG_STATE_HOME": str(work / "state")},
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return process, port
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"guard did not get ready: {(work / 'guard.log').read_text()[-2000:]}")


def bytes_read(pid: int) -> int:
    """Bytes the process read through read(2)-like calls: its sockets, mostly."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fenced_after(state_dir: Path, node: str, timeout: float = 120) -> tuple[float, float | None]:
    """Power the node's VM off; seconds until FireproofFenced from the request, and from the
    moment the VM read off (None when never seen off)."""
    requested = time.time()
    cli("lab", "power-off", node, "--state-dir", str(state_dir))
    off_at: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = json.loads(kubectl(state_dir, "get", "events", "-A", "-o", "json"))["items"]
        for event in events:
            if event["involvedObject"].get("name") == node and event["reason"] == "FireproofFenced":
                at = time.time()
                return at - requested, (at - off_at if off_at else None)
        if off_at is None:
            status = json.loads(cli("lab", "status", "-o", "json", "--state-dir",
                                    str(state_dir)).stdout)  # fmt: skip
            if any(n["name"] == node and n["power"] != "running" for n in status["nodes"]):
                off_at = time.time()
        time.sleep(0.2)
    raise SystemExit(f"no FireproofFenced on {node} within {timeout:g} s")


def one_size(workers: int, window: float) -> dict[str, Any]:
    say(f"lab with {workers} workers (real profile)...")
    with running_lab("--profile", "real", "--workers", str(workers)) as state_dir:
        nodes = json.loads(kubectl(state_dir, "get", "nodes", "-o", "json"))["items"]
        node_bytes = sum(len(json.dumps(n)) for n in nodes) / len(nodes)
        time.sleep(20)  # let the start-up writes settle
        base_rps = request_rate(state_dir, window)
        work = Path(tempfile.mkdtemp(prefix="guard-scale-"))
        guard, _port = start_guard(state_dir, work)
        try:
            time.sleep(45)  # past guard's start-up hold (lease_stale_seconds)
            cpu0, read0, t0 = cpu_seconds(guard.pid), bytes_read(guard.pid), time.monotonic()
            rps = request_rate(state_dir, window)
            elapsed = time.monotonic() - t0
            cpu = (cpu_seconds(guard.pid) - cpu0) / elapsed * 100
            received = (bytes_read(guard.pid) - read0) / elapsed
            rss = rss_mib(guard.pid)
            victim = next(n["metadata"]["name"] for n in nodes if "worker" in n["metadata"]["name"])
            from_request, from_off = fenced_after(state_dir, victim)
        finally:
            guard.terminate()
            guard.wait(timeout=60)
    return {
        "nodes": len(nodes),
        "node_bytes": round(node_bytes),
        "guard_requests_per_s": round(rps - base_rps, 2),
        "guard_received_kb_per_s": round(received / 1024, 1),
        "lab_requests_per_s": round(base_rps, 1),
        "guard_cpu_percent": round(cpu, 2),
        "guard_rss_mib": round(rss, 1),
        "fenced_after_request_s": round(from_request, 2),
        "fenced_after_vm_off_s": round(from_off, 2) if from_off is not None else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="4,500", help="worker counts, comma-separated")
    parser.add_argument("--window", type=float, default=60.0, help="seconds per measurement")
    args = parser.parse_args()
    results = [one_size(int(w), args.window) for w in args.workers.split(",")]
    rows = [
        ("nodes", "nodes"),
        ("bytes per Node object", "node_bytes"),
        ("guard: API requests/s", "guard_requests_per_s"),
        ("guard: KB/s it receives (watches, GETs, Proxmox)", "guard_received_kb_per_s"),
        ("guard: CPU % of one core", "guard_cpu_percent"),
        ("guard: RSS MiB", "guard_rss_mib"),
        ("VM off -> FireproofFenced, s", "fenced_after_vm_off_s"),
        ("power-off request -> FireproofFenced, s", "fenced_after_request_s"),
        ("(the lab's own API requests/s)", "lab_requests_per_s"),
    ]
    small, big = results[0], results[-1]
    say(f"\n| | {' | '.join(str(r['nodes']) + ' nodes' for r in results)} | ratio |")
    say("| --- |" + " --- |" * (len(results) + 1))
    for label, key in rows:
        values = [r[key] for r in results]
        ratio = (
            f"{big[key] / small[key]:.2f}x"
            if isinstance(small[key], int | float) and small[key] and big[key] is not None
            else "-"
        )
        say(f"| {label} | {' | '.join(str(v) for v in values)} | {ratio} |")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
