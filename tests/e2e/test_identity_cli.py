"""Identity before fencing, ambiguous inventories and secret hygiene, through the CLI as a user
runs it against the lab (issue: fencing on real Proxmox). Each case once led to a wrong machine
"verified off", a leaked secret or a half-done heal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from incident import wait_dead_and_tainted
from labtools import LabHandle, fence_pve_device, run_cli

pytestmark = pytest.mark.lab
NODE = "tazlab-worker-01"  # VM 201 on pve-01
OTHER = "tazlab-worker-04"  # VM 204 on pve-02


def _config(lab: LabHandle) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((lab.state_dir / "fireproof.yaml").read_text())
    return doc


def _write(tmp_path: Path, doc: dict[str, Any], name: str = "fireproof.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return run_cli(*args, env={"XDG_STATE_HOME": str(tmp_path / "state"), **(env or {})})


def _one_error(stderr: str, *expected: str) -> None:
    assert "Traceback" not in stderr
    assert "internal error" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for text in expected:
        assert text in stderr, stderr


def _node(lab: LabHandle, name: str) -> dict[str, Any]:
    node: dict[str, Any] = lab.kubectl_json("get", "node", name)
    return node


def _power(lab: LabHandle, name: str) -> str:
    nodes = json.loads(lab.cli("lab", "status", "-o", "json").stdout)["nodes"]
    return str(next(n for n in nodes if n["name"] == name)["power"])


@pytest.fixture
def lab(healthy_lab: LabHandle) -> Iterator[LabHandle]:
    yield healthy_lab
    healthy_lab.cli("lab", "fault", "clear")
    for vmid in ("9101", "9102"):
        healthy_lab.cli("lab", "vm", "remove", vmid)
    for name in (NODE, OTHER):
        healthy_lab.cli("lab", "unpartition", name)
        healthy_lab.cli("lab", "power-on", name)


def test_a_terraform_vm_id_that_names_another_nodes_vm_is_refused(
    lab: LabHandle, tmp_path: Path
) -> None:
    # The one-character mistake: worker-01's vm_id says 204, worker-04's VM, already stopped.
    state = json.loads((lab.state_dir / "terraform.tfstate").read_text())
    for resource in state["resources"]:
        kept = []
        for instance in resource["instances"]:
            attributes = instance["attributes"]
            if attributes["name"] == NODE:
                attributes.update(vm_id=204, id="204", node_name="pve-02")
            if attributes["name"] != OTHER:
                kept.append(instance)
        resource["instances"] = kept
    bad_state = tmp_path / "terraform.tfstate"
    bad_state.write_text(json.dumps(state))
    doc = _config(lab)
    doc["inventory"] = {"terraform": [{"path": str(bad_state), "device": "lab-proxmox"}]}
    config = _write(tmp_path, doc)

    shown = _run(tmp_path, "inventory", "show", "--config", config, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    row = next(r for r in json.loads(shown.stdout) if r["node"] == NODE)
    assert row["verified"] == "MISMATCH"
    assert "tazlab-worker-04" in row["problem"]

    lab.cli("lab", "power-off", OTHER)
    lab.cli("lab", "partition", NODE)
    wait_dead_and_tainted(lab, NODE)
    healed = _run(tmp_path, "heal", "node", NODE, "--config", config, "--yes")
    assert healed.returncode == 1
    node_uuid = _node(lab, NODE)["status"]["nodeInfo"]["systemUUID"]
    _one_error(healed.stderr, f"{NODE} is not VM 204 on pve-02 ({OTHER})", node_uuid)
    assert str(bad_state) in healed.stderr  # the hint names the file to fix
    assert not _node(lab, NODE)["spec"].get("unschedulable")  # nothing was written
    assert _power(lab, NODE) == "running"
    for taint in _node(lab, NODE)["spec"].get("taints", []):
        assert taint["key"] != "node.kubernetes.io/out-of-service"

    fenced = _run(tmp_path, "fence", "off", NODE, "--config", config, "--yes")
    assert fenced.returncode == 1
    _one_error(fenced.stderr, "is not VM 204")


def test_discovery_skips_templates_and_refuses_names_shared_by_vms(
    lab: LabHandle, tmp_path: Path
) -> None:
    assert lab.cli("lab", "vm", "add", NODE, "--vmid", "9101", "--host", "pve-02").returncode == 0
    assert lab.cli("lab", "vm", "add", OTHER, "--vmid", "9102", "--template").returncode == 0
    doc = _config(lab)
    doc["inventory"] = {"discover": ["lab-proxmox"]}
    config = _write(tmp_path, doc)

    shown = _run(tmp_path, "inventory", "show", "--config", config, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    rows = {r["node"]: r for r in json.loads(shown.stdout)}
    assert rows[NODE]["verified"] == "AMBIGUOUS"
    assert "VM 201 on pve-01" in rows[NODE]["problem"]
    assert "VM 9101 on pve-02" in rows[NODE]["problem"]
    assert rows[OTHER]["vmid"] == 204  # the template that shares its name is not a machine
    assert rows[OTHER]["verified"] == "uuid"

    text = _run(tmp_path, "inventory", "show", "--config", config)
    assert "AMBIGUOUS" in text.stdout
    assert "mapping(s) are refused" in text.stdout

    status = _run(tmp_path, "fence", "status", NODE, "--config", config)
    assert status.returncode == 1
    _one_error(status.stderr, "VM 201 on pve-01", "VM 9101 on pve-02", "inventory.nodes")
    assert "hint: pin the machine" in status.stderr


def test_secrets_with_a_trailing_newline_work_and_injected_lines_are_refused(
    lab: LabHandle, tmp_path: Path
) -> None:
    secret = str(yaml.safe_load((lab.state_dir / "proxmox.yaml").read_text())["token_secret"])
    doc = _config(lab)
    doc["devices"]["lab-proxmox"]["token_secret"] = {"env": "FP_E2E_TOKEN"}
    config = _write(tmp_path, doc)
    read = _run(
        tmp_path, "fence", "status", NODE, "--config", config, env={"FP_E2E_TOKEN": secret + "\n"}
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.startswith(f"{NODE}: on")

    injected = _run(
        tmp_path,
        "fence",
        "status",
        NODE,
        "--config",
        config,
        env={"FP_E2E_TOKEN": secret + "\nplug=202"},
    )
    assert injected.returncode == 1
    _one_error(injected.stderr, "control character", "FP_E2E_TOKEN")
    assert secret not in injected.stderr + injected.stdout

    # fence_pve reads options on stdin: a password line must not add a `plug=` line.
    access = yaml.safe_load((lab.state_dir / "proxmox.yaml").read_text())
    doc["devices"]["lab-proxmox"] = fence_pve_device(lab, f"{access['password']}\nplug=202\n")
    doc["inventory"] = {"nodes": {NODE: {"device": "lab-proxmox", "plug": "201"}}}
    agent = _run(tmp_path, "fence", "status", NODE, "--config", _write(tmp_path, doc, "a.yaml"))
    assert agent.returncode == 1
    _one_error(agent.stderr, "control character")
    assert "Status" not in agent.stdout
    assert access["password"] not in agent.stderr + agent.stdout


def test_heal_fails_before_any_write_on_a_missing_secret_and_closed_on_a_dead_host(
    lab: LabHandle, tmp_path: Path
) -> None:
    lab.cli("lab", "partition", NODE)
    wait_dead_and_tainted(lab, NODE)
    doc = _config(lab)
    doc["devices"]["lab-proxmox"]["token_secret"] = {"env": "FP_E2E_UNSET"}
    missing = _run(tmp_path, "heal", "node", NODE, "--config", _write(tmp_path, doc), "--yes")
    assert missing.returncode == 1
    _one_error(missing.stderr, "FP_E2E_UNSET is not set")
    assert not _node(lab, NODE)["spec"].get("unschedulable")
    assert not (tmp_path / "state" / "fireproof" / "journal.jsonl").exists()

    assert lab.cli("lab", "fault", "add", "host-unreachable", "--host", "pve-01").returncode == 0
    dead = _run(
        tmp_path,
        "heal",
        "node",
        NODE,
        "--config",
        _write(tmp_path, _config(lab), "ok.yaml"),
        "--yes",
    )
    assert dead.returncode == 1
    _one_error(dead.stderr, "Proxmox host is unreachable", "Proxmox HA")
    assert _power(lab, NODE) == "running"
    for taint in _node(lab, NODE)["spec"].get("taints", []):
        assert taint["key"] != "node.kubernetes.io/out-of-service"


def test_a_proxmox_user_without_realm_is_a_config_error(lab: LabHandle, tmp_path: Path) -> None:
    doc = _config(lab)
    device = doc["devices"]["lab-proxmox"]
    del device["token_id"], device["token_secret"]
    device.update(user="root", password={"env": "FP_E2E_PASSWORD"})
    config = _write(tmp_path, doc)
    result = _run(tmp_path, "fence", "status", NODE, "--config", config)
    assert result.returncode == 1
    _one_error(result.stderr, "devices.lab-proxmox.user: must be USER@REALM", "root@pam")
