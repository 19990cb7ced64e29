"""`fireproof heal` on the lab, run as a user runs it: the incident healed, and every way
fencing can fail leaving the volumes where they are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from incident import (
    OUT_OF_SERVICE,
    POSTGRES,
    TRAEFIK,
    attachments,
    pods,
    running_pod,
    volume_of,
    wait_dead_and_tainted,
)
from labtools import LabHandle, has_taint, node_ready, run_cli, wait_for

pytestmark = pytest.mark.lab


def _config(lab: LabHandle, tmp_path: Path, **device: Any) -> Path:
    """The lab's own fireproof.yaml, with short timeouts (and any device overrides)."""
    doc = yaml.safe_load((lab.state_dir / "fireproof.yaml").read_text())
    doc["devices"]["lab-proxmox"].update(
        {"timeout_seconds": 2, "retries": 0, "verify_timeout_seconds": 6, **device}
    )
    path = tmp_path / "fireproof.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _fireproof(tmp_path: Path, *args: str, timeout: float = 240) -> Any:
    # The journal goes to a per-test state dir, not the user's.
    return run_cli(*args, env={"XDG_STATE_HOME": str(tmp_path / "state")}, timeout=timeout)


def _vm_status(lab: LabHandle, node: str) -> str:
    nodes = json.loads(lab.cli("lab", "status", "-o", "json").stdout)["nodes"]
    return str(next(n["power"] for n in nodes if n["name"] == node))


def test_heal_brings_the_incidents_workloads_back_and_recover_returns_the_node(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    lab = healthy_lab
    config = _config(lab, tmp_path)
    traefik, postgres = running_pod(lab, TRAEFIK), running_pod(lab, POSTGRES)
    dead = sorted({traefik["spec"]["nodeName"], postgres["spec"]["nodeName"]})
    traefik_pv = volume_of(lab, "traefik", "traefik")
    postgres_pv = volume_of(lab, "blog", "data-postgres-0")
    for node in dead:
        assert lab.cli("lab", "power-off", node).returncode == 0
    for node in dead:
        wait_dead_and_tainted(lab, node)

    for node in dead:
        healed = _fireproof(
            tmp_path, "heal", "node", node, "--config", str(config), "--yes", "-o", "json"
        )
        assert healed.returncode == 0, healed.stderr
        report = json.loads(healed.stdout)
        assert report["ok"] is True
        assert [s["step"] for s in report["steps"]] == ["cordon", "fence", "release", "workloads"]
        assert "verified off" in report["steps"][1]["message"]
        assert _vm_status(lab, node) == "stopped"
        node_obj = lab.kubectl_json("get", "node", node)
        assert has_taint(node_obj, OUT_OF_SERVICE, "NoExecute")
        assert node_obj["spec"]["unschedulable"] is True

    new_traefik, new_postgres = running_pod(lab, TRAEFIK), running_pod(lab, POSTGRES)
    assert new_traefik["spec"]["nodeName"] not in dead
    assert new_postgres["spec"]["nodeName"] not in dead
    assert new_postgres["metadata"]["uid"] != postgres["metadata"]["uid"]
    wait_for(
        "volume attachments moved",
        lambda: (
            [va["spec"]["nodeName"] for va in attachments(lab, traefik_pv)]
            == [new_traefik["spec"]["nodeName"]]
            and [va["spec"]["nodeName"] for va in attachments(lab, postgres_pv)]
            == [new_postgres["spec"]["nodeName"]]
        ),
        timeout=30,
    )
    events = lab.kubectl_json(
        "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={dead[0]}"
    )["items"]
    assert {"FireproofCordoned", "FireproofFenced", "FireproofReleased", "FireproofHealed"} <= {
        e["reason"] for e in events
    }
    journal = (tmp_path / "state" / "fireproof" / "journal.jsonl").read_text().splitlines()
    assert any(json.loads(line)["step"] == "fence" for line in journal)

    for node in dead:
        back = _fireproof(
            tmp_path, "heal", "node", node, "--recover", "--config", str(config), "--yes"
        )
        assert back.returncode == 0, back.stderr
        node_obj = lab.kubectl_json("get", "node", node)
        assert node_ready(node_obj) == "True"
        assert not has_taint(node_obj, OUT_OF_SERVICE, "NoExecute")
        assert not node_obj["spec"].get("unschedulable")


# Where heal stops: "identity" when the device cannot even say which machine it is (nothing is
# written at all), "fence" when the power-off is not verified (the node stays cordoned).
FAULTS = {
    "proxmox-api-down": (["api-error"], "500", "identity"),
    "auth-failure": (["auth-failure"], "refused the credentials", "identity"),
    "vm-ignores-stop": (["ignore-stop", "--vmid", "VMID"], "still on after", "fence"),
    "hanging-task": (["hang-tasks"], "still on after", "fence"),
    "hanging-api": (["hang"], "timed out", "identity"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_no_volume_is_released_unless_the_vm_is_verified_off(
    healthy_lab: LabHandle, tmp_path: Path, fault: str
) -> None:
    lab = healthy_lab
    config = _config(lab, tmp_path)
    traefik = running_pod(lab, TRAEFIK)
    node = traefik["spec"]["nodeName"]
    pv = volume_of(lab, "traefik", "traefik")
    inventory = yaml.safe_load((lab.state_dir / "inventory.yaml").read_text())
    vmid = str(inventory["nodes"][node]["vmid"])
    # Split brain: the kubelet is silent but the VM runs and still holds the volume.
    assert lab.cli("lab", "partition", node).returncode == 0
    wait_dead_and_tainted(lab, node)
    args, expected, stage = FAULTS[fault]
    assert (
        lab.cli("lab", "fault", "add", *[vmid if a == "VMID" else a for a in args]).returncode == 0
    )

    result = _fireproof(tmp_path, "heal", "node", node, "--config", str(config), "--yes")

    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    node_obj = lab.kubectl_json("get", "node", node)
    if stage == "fence":
        assert "fencing failed, nothing was released" in result.stderr
        assert "FAILED fence" in result.stdout  # the timeline says where it stopped
        assert node_obj["spec"]["unschedulable"] is True  # reported: it stays cordoned
    else:
        assert "nothing was done" in result.stderr
        assert not node_obj["spec"].get("unschedulable")  # not one write
    assert not has_taint(node_obj, OUT_OF_SERVICE, "NoExecute")
    assert [va["spec"]["nodeName"] for va in attachments(lab, pv)] == [node]
    assert any(p["metadata"]["uid"] == traefik["metadata"]["uid"] for p in pods(lab, TRAEFIK))
    lab.cli("lab", "fault", "clear")
    assert _vm_status(lab, node) == "running"


def test_partitioned_node_is_powered_off_before_its_volume_is_released(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    lab = healthy_lab
    config = _config(lab, tmp_path)
    traefik = running_pod(lab, TRAEFIK)
    node = traefik["spec"]["nodeName"]
    assert lab.cli("lab", "partition", node).returncode == 0
    wait_dead_and_tainted(lab, node)
    assert _vm_status(lab, node) == "running"

    result = _fireproof(
        tmp_path, "heal", "node", node, "--config", str(config), "--yes", "-o", "json"
    )
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)["steps"]
    assert [s["step"] for s in steps].index("fence") < [s["step"] for s in steps].index("release")
    assert _vm_status(lab, node) == "stopped"
    assert running_pod(lab, TRAEFIK)["spec"]["nodeName"] != node


def test_heal_api_endpoints_ends_the_crash_loop(healthy_lab: LabHandle, tmp_path: Path) -> None:
    lab = healthy_lab
    config = _config(lab, tmp_path)
    nodes = ["tazlab-cp-01", "tazlab-cp-02", "tazlab-cp-03"]
    original = [
        a["ip"]
        for s in lab.kubectl_json("get", "endpoints", "kubernetes")["subsets"]
        for a in s["addresses"]
    ]
    try:
        for i, node in enumerate(nodes):
            assert lab.cli("lab", "change-ip", node, f"192.0.2.18{i}").returncode == 0
        wait_for(
            "CoreDNS crash-looping",
            lambda: any(
                s["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
                for p in pods(lab, ("kube-system", "k8s-app=kube-dns"))
                for s in p["status"].get("containerStatuses") or []
            ),
            timeout=60,
        )
        dry = _fireproof(tmp_path, "heal", "api-endpoints", "--config", str(config), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "192.0.2.250" in dry.stdout  # the VIP named in the lab's fireproof.yaml
        fixed = _fireproof(tmp_path, "heal", "api-endpoints", "--config", str(config), "--yes")
        assert fixed.returncode == 0, fixed.stderr
        ep = lab.kubectl_json("get", "endpoints", "kubernetes")
        assert [a["ip"] for s in ep["subsets"] for a in s["addresses"]] == ["192.0.2.250"]
        wait_for(
            "CoreDNS Running and Ready",
            lambda: (
                (items := pods(lab, ("kube-system", "k8s-app=kube-dns")))
                and all(
                    c["ready"]
                    for p in items
                    if not p["metadata"].get("deletionTimestamp")
                    for c in p["status"].get("containerStatuses") or [{"ready": False}]
                )
            ),
            timeout=60,
        )
        again = _fireproof(tmp_path, "heal", "api-endpoints", "--config", str(config), "--yes")
        assert "nothing to do" in again.stdout
        events = lab.kubectl_json(
            "get", "events", "-n", "default", "--field-selector", "involvedObject.kind=Endpoints"
        )["items"]
        assert {"FireproofEndpointsRepaired", "FireproofRestarted"} <= {e["reason"] for e in events}
    finally:
        for node, address in zip(nodes, original, strict=True):
            lab.cli("lab", "change-ip", node, address)
        lab.kubectl(
            "patch",
            "endpoints",
            "kubernetes",
            "--type=merge",
            "-p",
            json.dumps(
                {
                    "subsets": [
                        {
                            "addresses": [{"ip": a} for a in original],
                            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
                        }
                    ]
                }
            ),
        )


def test_method_delete_force_deletes_pods_and_volume_attachments(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    """The path for clusters older than 1.28 (or by choice): no taint, explicit deletes."""
    lab = healthy_lab
    config = _config(lab, tmp_path)
    traefik = running_pod(lab, TRAEFIK)
    node = traefik["spec"]["nodeName"]
    pv = volume_of(lab, "traefik", "traefik")
    assert lab.cli("lab", "power-off", node).returncode == 0
    wait_dead_and_tainted(lab, node)

    result = _fireproof(
        tmp_path, "heal", "node", node, "--config", str(config), "--method", "delete", "--yes"
    )
    assert result.returncode == 0, result.stderr
    assert "force-delete its" in result.stdout  # the plan said what would happen
    assert "force-deleted" in result.stdout
    assert not has_taint(lab.kubectl_json("get", "node", node), OUT_OF_SERVICE, "NoExecute")
    assert all(p["metadata"]["uid"] != traefik["metadata"]["uid"] for p in pods(lab, TRAEFIK))
    moved = running_pod(lab, TRAEFIK)
    assert moved["spec"]["nodeName"] != node
    wait_for(
        "volume attached to the new node only",
        lambda: (
            [va["spec"]["nodeName"] for va in attachments(lab, pv)] == [moved["spec"]["nodeName"]]
        ),
        timeout=30,
    )
