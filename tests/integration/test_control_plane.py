"""The lab's control plane is the real upstream one, usable with the real kubectl."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from labtools import LabHandle, deployment_manifest, node_ready, wait_for

pytestmark = pytest.mark.lab


def _pinned_version() -> str:
    from fireproof.lab.binaries import module_dir, pinned_version

    return pinned_version(module_dir())


def test_kubectl_lists_every_node_ready(healthy_lab: LabHandle) -> None:
    nodes = healthy_lab.kubectl_json("get", "nodes")["items"]
    names = sorted(n["metadata"]["name"] for n in nodes)
    assert names == [
        *(f"tazlab-cp-{i:02d}" for i in (1, 2, 3)),
        *(f"tazlab-worker-{i:02d}" for i in (1, 2, 3, 4)),
    ]
    assert all(node_ready(n) == "True" for n in nodes)
    cp = next(n for n in nodes if n["metadata"]["name"] == "tazlab-cp-01")
    assert "node-role.kubernetes.io/control-plane" in cp["metadata"]["labels"]
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in cp["spec"][
        "taints"
    ]
    for node in nodes:
        annotations = node["metadata"]["annotations"]
        assert annotations["volumes.kubernetes.io/controller-managed-attach-detach"] == "true"
        internal = [a for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert internal
        assert internal[0]["address"].startswith("192.0.2.")


def test_kubectl_version_shows_pinned_server(healthy_lab: LabHandle) -> None:
    result = healthy_lab.kubectl("version", "-o", "json")
    assert result.returncode == 0, result.stderr
    version = json.loads(result.stdout)["serverVersion"]
    assert version["gitVersion"] == _pinned_version()
    assert re.fullmatch(r"v1\.\d+\.\d+", version["gitVersion"])


def test_node_leases_are_renewed(healthy_lab: LabHandle) -> None:
    def renew_times() -> dict[str, str]:
        leases = healthy_lab.kubectl_json("get", "leases", "-n", "kube-node-lease")["items"]
        return {lease["metadata"]["name"]: lease["spec"]["renewTime"] for lease in leases}

    first = renew_times()
    assert len(first) == 7
    wait_for(
        "every lease renewed",
        lambda: all(renew_times()[name] != t for name, t in first.items()),
        timeout=15,
    )


def test_deployment_applied_with_kubectl_runs_on_workers(healthy_lab: LabHandle) -> None:
    ns = f"apply-{uuid.uuid4().hex[:6]}"
    healthy_lab.apply(deployment_manifest("web", ns, replicas=3))

    def running() -> list[dict[str, object]] | None:
        pods = healthy_lab.kubectl_json("get", "pods", "-n", ns)["items"]
        ok = [p for p in pods if p["status"].get("phase") == "Running"]
        return ok if len(ok) == 3 else None

    pods = wait_for("3 running pods", running, timeout=60)
    for pod in pods:
        spec, status = pod["spec"], pod["status"]
        # The real scheduler bound it, and never to the tainted control-plane node.
        assert spec["nodeName"].startswith("tazlab-worker-")
        assert status["hostIP"].startswith("192.0.2.")
        assert status["podIP"]
        assert all(c["ready"] and "running" in c["state"] for c in status["containerStatuses"])
        assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    table = healthy_lab.kubectl("get", "pods", "-A")
    assert table.returncode == 0
    assert table.stdout.count("Running") >= 3
    healthy_lab.kubectl("delete", "namespace", ns, "--wait=false")


def test_deleted_pod_is_finished_by_its_kubelet(healthy_lab: LabHandle) -> None:
    ns = f"del-{uuid.uuid4().hex[:6]}"
    healthy_lab.apply(deployment_manifest("gone", ns, replicas=1))
    wait_for(
        "running pod",
        lambda: [
            p
            for p in healthy_lab.kubectl_json("get", "pods", "-n", ns)["items"]
            if p["status"].get("phase") == "Running"
        ],
    )
    healthy_lab.kubectl("scale", "deployment/gone", "-n", ns, "--replicas=0")
    # Graceful deletion completes only because the (simulated) kubelet confirms it.
    wait_for(
        "pod deleted",
        lambda: not healthy_lab.kubectl_json("get", "pods", "-n", ns)["items"],
        timeout=30,
    )
    healthy_lab.kubectl("delete", "namespace", ns, "--wait=false")
