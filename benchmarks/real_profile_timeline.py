"""Power-off timeline with upstream timings (`real` profile) next to the `fast` profile.

For each profile: start a minimal lab (1 control plane + 3 workers), run a 2-replica
Deployment, power off (through the lab's Proxmox API) the worker of one of its pods, and time
what the real kube-controller-manager does: Ready=Unknown, the unreachable NoExecute taint,
the deletionTimestamp on the old pod (taint eviction after the 300 s toleration with upstream
defaults) and the replacement pod Running. The real profile takes about 6 minutes.
Usage: python benchmarks/real_profile_timeline.py [fast|real|both]
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lightkube import Client
from lightkube.resources.core_v1 import Node, Pod

from fireproof.kube import load_kubeconfig, sync_client

from _lab import FIREPROOF, cli, running_lab

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: main, image: "nginx:1.27"}]
"""
PHASES = ("node Unknown", "unreachable taint", "pod deletionTimestamp", "replacement Running")


def wait(what: str, probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def web_pods(client: Client) -> list[Pod]:
    return list(client.list(Pod, namespace="default", labels={"app": "web"}))


def running_on(client: Client, exclude: str) -> bool:
    return (
        any(
            p.status is not None
            and p.status.phase == "Running"
            and p.spec is not None
            and p.spec.nodeName != exclude
            and p.metadata is not None
            and p.metadata.deletionTimestamp is None
            for p in web_pods(client)
        )
        and sum(1 for p in web_pods(client) if p.status and p.status.phase == "Running") >= 2
    )


def ready(node: Node) -> str:
    for cond in (node.status.conditions if node.status else None) or []:
        if cond.type == "Ready":
            return cond.status
    return "Unknown"


def timeline(profile: str) -> dict[str, float]:
    with running_lab("--profile", profile, "--topology", "minimal") as state_dir:
        client = sync_client(load_kubeconfig(state_dir / "kubeconfig"))
        apply_manifest(state_dir)
        wait(
            "2 web pods Running",
            lambda: (
                sum(1 for p in web_pods(client) if p.status and p.status.phase == "Running") == 2
            ),
            120,
        )
        victim_pod = web_pods(client)[0]
        assert victim_pod.spec is not None
        assert victim_pod.metadata is not None
        victim = victim_pod.spec.nodeName or ""
        pod_name = victim_pod.metadata.name or ""
        result = cli("lab", "power-off", "--state-dir", str(state_dir), victim)
        if result.returncode != 0:
            raise SystemExit(f"power-off failed: {result.stderr}")
        t0 = time.monotonic()
        marks: dict[str, float] = {}
        limit = 900.0

        def mark(phase: str, probe: Callable[[], bool]) -> None:
            wait(phase, probe, limit)
            marks[phase] = round(time.monotonic() - t0, 1)
            print(f"  [{profile}] {phase} after {marks[phase]} s", flush=True)

        mark("node Unknown", lambda: ready(client.get(Node, victim)) == "Unknown")
        mark(
            "unreachable taint",
            lambda: any(
                t.key == "node.kubernetes.io/unreachable" and t.effect == "NoExecute"
                for t in (client.get(Node, victim).spec.taints or [])
            ),
        )
        mark(
            "pod deletionTimestamp",
            lambda: (
                client.get(Pod, pod_name, namespace="default").metadata.deletionTimestamp
                is not None
            ),
        )
        mark("replacement Running", lambda: running_on(client, victim))
        return marks


def apply_manifest(state_dir: Path) -> None:
    done = subprocess.run(
        [FIREPROOF, "lab", "kubectl", "--state-dir", str(state_dir), "--", "apply", "-f", "-"],
        input=MANIFEST,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise SystemExit(f"kubectl apply failed: {done.stderr}")


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "both"
    profiles = ["fast", "real"] if which == "both" else [which]
    rows = {p: timeline(p) for p in profiles}
    print("seconds from power-off (minimal lab, 2-replica Deployment)")
    header = "".join(f"{p:>10}" for p in profiles) + (
        "     real/fast" if len(profiles) == 2 else ""
    )
    print(f"{'phase':<24}{header}")
    for phase in PHASES:
        cells = "".join(f"{rows[p][phase]:>10.1f}" for p in profiles)
        ratio = ""
        if len(profiles) == 2 and rows["fast"][phase] > 0:
            ratio = f"{rows['real'][phase] / rows['fast'][phase]:>13.1f}x"
        print(f"{phase:<24}{cells}{ratio}")


if __name__ == "__main__":
    main()
