"""An API outage in the lab (`lab apiserver stop|start`), as the fault campaign makes one: the
components see it as on a real cluster, a VM that boots during it registers once the API
server is back, however long the outage (it gave up after 30 s), and the simulated kubelets'
watches come back (they died on the refused reconnect and nothing started any more). Both
were found by the fault campaign."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from labtools import LabHandle, deployment_manifest, node_ready, wait_for

pytestmark = pytest.mark.lab

NODE = "tazlab-worker-03"


@pytest.fixture
def outage_lab(healthy_lab: LabHandle) -> Iterator[LabHandle]:
    yield healthy_lab
    healthy_lab.cli("lab", "apiserver", "start")


def _boot_id(lab: LabHandle) -> str:
    return str(lab.kubectl_json("get", "node", NODE)["status"]["nodeInfo"]["bootID"])


def test_a_vm_booted_during_a_long_api_outage_registers_when_the_api_is_back(
    outage_lab: LabHandle,
) -> None:
    lab = outage_lab
    before = _boot_id(lab)
    assert lab.cli("lab", "power-off", NODE).returncode == 0
    stopped = lab.cli("lab", "apiserver", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "kube-apiserver stopped" in stopped.stdout
    assert lab.kubectl("get", "nodes").returncode != 0  # refused: a real outage
    assert lab.cli("lab", "apiserver", "stop").stdout.strip() == "kube-apiserver already stopped"
    # The hypervisor does not need the API server: the VM boots now, with nobody to talk to.
    assert lab.cli("lab", "power-on", NODE).returncode == 0
    time.sleep(35)  # longer than the 30 s the kubelet used to try before giving up
    started = lab.cli("lab", "apiserver", "start")
    assert started.returncode == 0, started.stderr
    assert "kube-apiserver started" in started.stdout

    def back() -> bool:
        node = lab.kubectl_json("get", "node", NODE)
        return bool(node_ready(node) == "True" and node["status"]["nodeInfo"]["bootID"] != before)

    wait_for(f"{NODE} Ready under a new boot", back, timeout=60)
    status = lab.cli("lab", "status")
    assert status.returncode == 0, status.stdout + status.stderr

    # Pods created after the outage still start: the kubelets' pod watch survived it.
    lab.apply(deployment_manifest("after-outage", "outage", 2))
    try:

        def running() -> bool:
            pods = lab.kubectl_json("get", "pods", "-n", "outage")["items"]
            return len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods)

        # kube-controller-manager takes up to a minute after an API restart (its informers back
        # off after the still-cold RBAC refused them), as upstream.
        wait_for("pods created after the outage Running", running, timeout=150)
    finally:
        # Gone before the next test: a pod of a namespace still terminating has no
        # replacement, and a heal of its node would wait for one (a full run saw it).
        lab.kubectl("delete", "namespace", "outage", "--timeout=50s")


def _ready_condition(pod: Any) -> str:
    conditions = pod["status"].get("conditions", [])
    return str(next((c["status"] for c in conditions if c["type"] == "Ready"), "Unknown"))


def test_pods_marked_not_ready_during_a_partition_are_ready_again_after_it(
    outage_lab: LabHandle,
) -> None:
    lab = outage_lab
    selector = ["-n", "kube-system", "-l", "k8s-app=kube-proxy"]
    selector += ["--field-selector", f"spec.nodeName={NODE}"]

    def proxy() -> Any:
        items = lab.kubectl_json("get", "pods", *selector)["items"]
        assert len(items) == 1
        return items[0]

    def restarts(pod: Any) -> list[int]:
        return [int(s["restartCount"]) for s in pod["status"]["containerStatuses"]]

    before = proxy()
    assert lab.cli("lab", "partition", NODE).returncode == 0
    # The node lifecycle controller marks the node's pods not Ready once the node is NotReady.
    wait_for("kube-proxy not Ready", lambda: _ready_condition(proxy()) == "False", timeout=60)
    assert lab.cli("lab", "unpartition", NODE).returncode == 0
    # The kubelet's status manager reports its own view again: Ready, with no restart.
    wait_for("kube-proxy Ready again", lambda: _ready_condition(proxy()) == "True", timeout=60)
    after = proxy()
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert restarts(after) == restarts(before)


def test_change_ip_returns_once_the_node_shows_it_and_never_waits_on_a_dead_api(
    outage_lab: LabHandle,
) -> None:
    lab = outage_lab

    def internal_ip() -> str:
        addresses = lab.kubectl_json("get", "node", NODE)["status"]["addresses"]
        return str(next(a["address"] for a in addresses if a["type"] == "InternalIP"))

    original = internal_ip()
    try:
        changed = lab.cli("lab", "change-ip", NODE, "192.0.2.160")
        assert changed.returncode == 0, changed.stderr
        # The next reader (a rollback's `heal api-endpoints`) sees the new address at once.
        assert internal_ip() == "192.0.2.160"
        assert lab.cli("lab", "apiserver", "stop").returncode == 0
        # Nobody can read the Node during the outage: nothing to wait for, no 30 s hang.
        during = lab.cli("lab", "change-ip", NODE, "192.0.2.161")
        assert during.returncode == 0, during.stderr
        assert "192.0.2.161" in during.stdout
    finally:
        lab.cli("lab", "apiserver", "start")
        lab.cli("lab", "change-ip", NODE, original)
    assert internal_ip() == original
