"""`fireproof fence`, `inventory` and `heal` as a user runs them: both fencing drivers against
the lab's Proxmox, and one clear line (never a secret, never a traceback) for every bad input."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from incident import wait_dead_and_tainted
from labtools import LabHandle, fence_pve_device, run_cli

pytestmark = pytest.mark.lab
NODE = "tazlab-worker-03"


def _lab_config(lab: LabHandle) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((lab.state_dir / "fireproof.yaml").read_text())
    return doc


def _write(tmp_path: Path, doc: dict[str, Any], name: str = "fireproof.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(tmp_path: Path, *args: str, stdin: str | None = None) -> Any:
    return run_cli(*args, env={"XDG_STATE_HOME": str(tmp_path / "state")}, input=stdin)


def _one_clear_error(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.strip().splitlines() if line]
    assert lines
    assert any(expected in line for line in lines), stderr
    assert len([line for line in lines if line.startswith("error:")]) == 1, stderr


def _secret(lab: LabHandle) -> str:
    return str(yaml.safe_load((lab.state_dir / "proxmox.yaml").read_text())["token_secret"])


def test_inventory_show_maps_every_node_from_the_terraform_state(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    env_lab = {"FIREPROOF_LAB_DIR": str(healthy_lab.state_dir)}
    result = run_cli("inventory", "show", "--lab", "-o", "json", env=env_lab)
    assert result.returncode == 0, result.stderr
    rows = {r["node"]: r for r in json.loads(result.stdout)}
    assert len(rows) == 7
    assert rows[NODE]["device"] == "lab-proxmox"
    assert rows[NODE]["source"].startswith("terraform:")
    assert all(r["vmid"] for r in rows.values())

    # Without the Terraform source, discovery by VM name finds the same machines.
    doc = _lab_config(healthy_lab)
    del doc["inventory"]["terraform"]
    found = _run(
        tmp_path, "inventory", "show", "--config", str(_write(tmp_path, doc)), "-o", "json"
    )
    assert found.returncode == 0, found.stderr
    discovered = {r["node"]: r for r in json.loads(found.stdout)}
    assert discovered[NODE]["source"] == "discovery:lab-proxmox"
    assert discovered[NODE]["vmid"] == rows[NODE]["vmid"]

    # Without any source, every node is flagged.
    del doc["inventory"]
    bare = _run(tmp_path, "inventory", "show", "--config", str(_write(tmp_path, doc)))
    assert bare.returncode == 0, bare.stderr
    assert "7 node(s) have no fencing device" in bare.stdout


@pytest.mark.parametrize("driver", ["proxmox", "fence-agent"])
def test_fence_status_off_on_with_both_drivers(
    healthy_lab: LabHandle, tmp_path: Path, driver: str
) -> None:
    doc = _lab_config(healthy_lab)
    if driver == "fence-agent":
        access = yaml.safe_load((healthy_lab.state_dir / "proxmox.yaml").read_text())
        doc["devices"]["lab-proxmox"] = fence_pve_device(healthy_lab, access["password"])
        # A fence agent cannot say which machine a plug is: only a pinned mapping is trusted.
        unpinned = _run(tmp_path, "fence", "status", NODE, "--config", str(_write(tmp_path, doc)))
        assert unpinned.returncode == 1
        _one_clear_error(unpinned.stderr, "cannot say which machine VM 203")
        doc["inventory"]["nodes"] = {NODE: {"device": "lab-proxmox", "host": "pve-01", "vmid": 203}}
    config = str(_write(tmp_path, doc))
    try:
        status = _run(tmp_path, "fence", "status", NODE, "--config", config)
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith(f"{NODE}: on")
        refused = _run(tmp_path, "fence", "off", NODE, "--config", config, stdin="")
        assert refused.returncode == 1
        _one_clear_error(refused.stderr, "without confirmation")
        off = _run(tmp_path, "fence", "off", NODE, "--config", config, "--yes")
        assert off.returncode == 0, off.stderr
        assert "verified off" in off.stdout
        nodes = json.loads(healthy_lab.cli("lab", "status", "-o", "json").stdout)["nodes"]
        assert next(n for n in nodes if n["name"] == NODE)["power"] == "stopped"
        on = _run(tmp_path, "fence", "on", NODE, "--config", config, "--yes")
        assert on.returncode == 0, on.stderr
        assert "verified on" in on.stdout
    finally:
        healthy_lab.cli("lab", "power-on", NODE)


def test_heal_refuses_a_ready_node_an_unknown_node_and_a_node_without_device(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    config = str(_write(tmp_path, _lab_config(healthy_lab)))
    ready = _run(tmp_path, "heal", "node", NODE, "--config", config, "--yes")
    assert ready.returncode == 1
    _one_clear_error(ready.stderr, f"{NODE} is Ready")

    unknown = _run(tmp_path, "heal", "node", "no-such-node", "--config", config, "--yes")
    assert unknown.returncode == 1
    _one_clear_error(unknown.stderr, "unknown node no-such-node")

    doc = _lab_config(healthy_lab)
    del doc["inventory"]
    bare = str(_write(tmp_path, doc, "bare.yaml"))
    healthy_lab.cli("lab", "partition", NODE)
    try:
        wait_dead_and_tainted(healthy_lab, NODE)
        no_device = _run(tmp_path, "heal", "node", NODE, "--config", bare, "--yes")
    finally:
        healthy_lab.cli("lab", "unpartition", NODE)
    assert no_device.returncode == 1
    _one_clear_error(no_device.stderr, f"{NODE} has no fencing device")
    nodes = json.loads(healthy_lab.cli("lab", "status", "-o", "json").stdout)["nodes"]
    assert next(n for n in nodes if n["name"] == NODE)["power"] == "running"  # nothing done


def test_bad_config_files_name_file_line_and_field(tmp_path: Path) -> None:
    cases = {
        "devices:\n  pve:\n\ttype: proxmox\n": ":3: malformed YAML",
        "devices:\n  pve:\n    type: ilo\n": ":3: devices.pve.type: must be one of",
        "devices:\n  pve:\n    url: http://pve:8006\n    token_id: a@pam!b\n"
        "    token_secret: {env: X}\n": ":3: devices.pve.url: must be an https:// URL",
        "devices:\n  pve:\n    url: https://pve:8006\n    token_id: nobang\n"
        "    token_secret: {env: X}\n": ":4: devices.pve.token_id: must look like",
        "inventory:\n  nodes:\n    w1: {device: nope}\n": (
            ":3: inventory.nodes.w1.device: unknown device"
        ),
        "remediation:\n  method: pray\n": ":2: remediation.method: must be one of",
        "clusterr: {}\n": ":1: clusterr: unknown field",
    }
    for number, (text, expected) in enumerate(cases.items()):
        path = tmp_path / f"bad-{number}.yaml"
        path.write_text(text)
        result = _run(tmp_path, "inventory", "show", "--config", str(path))
        assert result.returncode == 1, text
        _one_clear_error(result.stderr, f"{path}{expected}")
    state = tmp_path / "broken.tfstate"
    state.write_text('{"version": 4,\n "resources": [\n')
    with_state = tmp_path / "with-state.yaml"
    with_state.write_text(
        f"devices:\n  d: {{type: fake}}\ninventory:\n  terraform: [{{path: {state}, device: d}}]\n"
    )
    broken = _run(tmp_path, "inventory", "show", "--config", str(with_state))
    assert broken.returncode == 1
    _one_clear_error(broken.stderr, f"{state}:3: malformed Terraform state")
    missing = _run(tmp_path, "inventory", "show", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1
    _one_clear_error(missing.stderr, "no such file")


def test_credentials_tls_and_reachability_errors_are_one_line_without_secrets(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    secret = _secret(healthy_lab)
    wrong_file = tmp_path / "wrong-token"
    wrong_file.write_text("00000000-0000-0000-0000-000000000000")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    cases = {
        "wrong token": ({"token_secret": {"file": str(wrong_file)}}, "refused the credentials"),
        "TLS failure": ({"ca_file": None}, "TLS verification of"),
        "unreachable": ({"url": f"https://127.0.0.1:{closed_port}"}, "is unreachable"),
        "unset secret": ({"token_secret": {"env": "FIREPROOF_TEST_UNSET"}}, "is not set"),
    }
    for name, (override, expected) in cases.items():
        doc = _lab_config(healthy_lab)
        device = doc["devices"]["lab-proxmox"]
        device.update({"timeout_seconds": 2, "retries": 0, **override})
        if device.get("ca_file") is None:
            device.pop("ca_file")
        result = _run(tmp_path, "fence", "status", NODE, "--config", str(_write(tmp_path, doc)))
        assert result.returncode == 1, name
        _one_clear_error(result.stderr, expected)
        assert secret not in result.stdout + result.stderr, name


def test_lab_flag_without_a_lab_and_conflicting_flags(tmp_path: Path) -> None:
    result = run_cli(
        "inventory", "show", "--lab", env={"FIREPROOF_LAB_DIR": str(tmp_path / "nothing")}
    )
    assert result.returncode == 1
    _one_clear_error(result.stderr, "no running lab")
    both = _run(tmp_path, "inventory", "show", "--lab", "--config", "x.yaml")
    assert both.returncode == 2


def test_help_of_every_new_command_is_clear() -> None:
    for args in (["heal"], ["heal", "node"], ["heal", "api-endpoints"], ["fence"], ["inventory"]):
        result = run_cli(*args, "--help")
        assert result.returncode == 0, args
        assert "Usage:" in result.stdout
    assert "--recover" in run_cli("heal", "node", "--help").stdout
