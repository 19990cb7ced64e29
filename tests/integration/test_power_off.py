"""A hard power-off, as the real kube-controller-manager sees it (fast profile timings)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from labtools import LabHandle, deployment_manifest, has_taint, node_ready, wait_for

pytestmark = pytest.mark.lab


def _pods(lab: LabHandle, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = lab.kubectl_json("get", "pods", "-n", ns)["items"]
    return items


def _node(lab: LabHandle, name: str) -> dict[str, Any]:
    node: dict[str, Any] = lab.kubectl_json("get", "node", name)
    return node


def test_powered_off_worker_is_tainted_evicted_and_recovers(healthy_lab: LabHandle) -> None:
    lab = healthy_lab
    ns = f"power-{uuid.uuid4().hex[:6]}"
    lab.apply(deployment_manifest("app", ns, replicas=3))
    running = wait_for(
        "3 running pods",
        lambda: (
            r
            if len(r := [p for p in _pods(lab, ns) if p["status"].get("phase") == "Running"]) == 3
            else None
        ),
        timeout=60,
    )
    victim_pod = running[0]
    victim = victim_pod["spec"]["nodeName"]
    victim_uid = victim_pod["metadata"]["uid"]

    result = lab.cli("lab", "power-off", victim)
    assert result.returncode == 0, result.stderr
    try:
        # 1. The node lifecycle controller notices the silence: Ready=Unknown + unreachable taint.
        node = wait_for(
            "Ready=Unknown with unreachable:NoExecute",
            lambda: (
                n
                if node_ready(n := _node(lab, victim)) == "Unknown"
                and has_taint(n, "node.kubernetes.io/unreachable", "NoExecute")
                else None
            ),
            timeout=30,
        )
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "NodeStatusUnknown"

        # 2. After the toleration, taint eviction deletes the pod; with no kubelet to confirm,
        #    it stays Terminating.
        def terminating() -> dict[str, Any] | None:
            pod = next((p for p in _pods(lab, ns) if p["metadata"]["uid"] == victim_uid), None)
            return pod if pod and pod["metadata"].get("deletionTimestamp") else None

        wait_for("victim pod Terminating", terminating, timeout=40)
        for _ in range(6):
            time.sleep(0.5)
            assert terminating() is not None, "pod on a dead node must stay Terminating"

        # 3. The Deployment's replacement lands on another node and runs.
        def replaced() -> bool:
            alive = [
                p
                for p in _pods(lab, ns)
                if not p["metadata"].get("deletionTimestamp")
                and p["status"].get("phase") == "Running"
            ]
            return len(alive) == 3 and all(p["spec"]["nodeName"] != victim for p in alive)

        wait_for("replacement Running elsewhere", replaced, timeout=40)
    finally:
        on = lab.cli("lab", "power-on", victim)
        assert on.returncode == 0, on.stderr

    # 4. Power-on is a reboot: Ready again, taints lifted, the dead pod cleaned up.
    wait_for("node Ready again", lambda: node_ready(_node(lab, victim)) == "True", timeout=30)
    wait_for(
        "unreachable taint removed",
        lambda: not has_taint(_node(lab, victim), "node.kubernetes.io/unreachable", "NoExecute"),
        timeout=30,
    )
    wait_for(
        "terminating pod removed by the rebooted kubelet",
        lambda: all(p["metadata"]["uid"] != victim_uid for p in _pods(lab, ns)),
        timeout=30,
    )
    lab.kubectl("delete", "namespace", ns, "--wait=false")
