"""What the simulated kubelet writes must look like what a kubelet writes."""

from __future__ import annotations

from fireproof.lab.agent.objects import (
    ATTACH_DETACH_ANNOTATION,
    event_manifest,
    lease_manifest,
    node_manifest,
    node_status,
    running_pod_status,
)
from fireproof.lab.topology import build_topology


def test_control_plane_node_is_labelled_and_tainted_like_kubeadm_and_talos() -> None:
    cp = build_topology("tazlab").control_plane[0]
    node = node_manifest(cp, 0)
    assert node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == ""
    assert node["spec"]["taints"] == [
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    ]
    assert node["metadata"]["annotations"][ATTACH_DETACH_ANNOTATION] == "true"


def test_worker_node_has_no_taint_and_its_hypervisor_as_zone() -> None:
    worker = build_topology("tazlab").workers[1]
    node = node_manifest(worker, 4)
    assert node["spec"]["taints"] == []
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == worker.hypervisor_host
    assert "node-role.kubernetes.io/control-plane" not in node["metadata"]["labels"]


def test_node_status_reports_ready_addresses_and_versions() -> None:
    worker = build_topology("minimal").workers[0]
    status = node_status(
        worker, version="v1.37.2", boot_id="b-1", ready_since="2026-01-01T00:00:00Z"
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert ready["reason"] == "KubeletReady"
    assert ready["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert {"type": "InternalIP", "address": worker.address} in status["addresses"]
    assert status["nodeInfo"]["kubeletVersion"] == "v1.37.2"
    assert status["nodeInfo"]["bootID"] == "b-1"
    assert status["capacity"]["pods"] == "110"


def test_lease_is_owned_by_its_node() -> None:
    lease = lease_manifest("n1", "uid-1", 40)
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["spec"]["renewTime"].endswith("Z")


def test_running_pod_status_has_every_condition_and_container_state() -> None:
    patch = running_pod_status(
        pod_uid="u",
        containers=[("app", "nginx:1.27"), ("side", "busybox")],
        init_containers=[("init", "busybox")],
        host_ip="192.0.2.21",
        pod_ip="10.244.1.2",
        restart_count=2,
        started_at="2026-01-01T00:00:00Z",
    )["status"]
    assert patch["phase"] == "Running"
    assert {c["type"] for c in patch["conditions"]} == {
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    }
    assert [c["name"] for c in patch["containerStatuses"]] == ["app", "side"]
    assert all(c["restartCount"] == 2 for c in patch["containerStatuses"])
    assert patch["containerStatuses"][0]["imageID"].startswith("nginx@sha256:")
    assert patch["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    # Container IDs change with each restart, as a runtime's would.
    again = running_pod_status(
        pod_uid="u",
        containers=[("app", "nginx:1.27")],
        init_containers=[],
        host_ip="h",
        pod_ip="p",
        restart_count=3,
        started_at="t",
    )["status"]
    assert (
        again["containerStatuses"][0]["containerID"] != patch["containerStatuses"][0]["containerID"]
    )


def test_events_are_attributed_to_the_kubelet_of_a_host() -> None:
    event = event_manifest(
        involved={"kind": "Pod", "name": "p", "namespace": "ns"},
        reason="Started",
        message="Started container app",
        host="n1",
    )
    assert event["metadata"]["namespace"] == "ns"
    assert event["source"] == {"component": "kubelet", "host": "n1"}
    assert event["type"] == "Normal"
