"""The Terraform importer and the inventory's source precedence (state files written here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fireproof.config import load_config
from fireproof.errors import UsageError
from fireproof.inventory import VmInfo, build_inventory, read_terraform_state
from fireproof.lab.exports import terraform_state
from fireproof.lab.topology import build_topology


def _bpg(name: str, vm_id: int, node: str, ip: str, key: Any = None) -> dict[str, Any]:
    instance: dict[str, Any] = {
        "schema_version": 0,
        "attributes": {
            "name": name,
            "vm_id": vm_id,
            "node_name": node,
            "ipv4_addresses": [["127.0.0.1"], [ip]],
        },
    }
    if key is not None:
        instance["index_key"] = key
    return instance


def _telmate(name: str, vmid: int, node: str, ip: str, key: Any = None) -> dict[str, Any]:
    instance: dict[str, Any] = {
        "schema_version": 0,
        "attributes": {
            "name": name,
            "vmid": vmid,
            "target_node": node,
            "default_ipv4_address": ip,
        },
    }
    if key is not None:
        instance["index_key"] = key
    return instance


def _state(tmp_path: Path, resources: list[dict[str, Any]], version: int = 4) -> Path:
    path = tmp_path / "terraform.tfstate"
    path.write_text(json.dumps({"version": version, "serial": 3, "resources": resources}))
    return path


def test_bpg_resources_in_nested_modules_with_for_each(tmp_path: Path) -> None:
    path = _state(
        tmp_path,
        [
            {
                "module": "module.cluster.module.workers",
                "mode": "managed",
                "type": "proxmox_virtual_environment_vm",
                "name": "worker",
                "instances": [
                    _bpg("w-01", 201, "pve-a", "192.0.2.81", key="w-01"),
                    _bpg("w-02", 202, "pve-b", "192.0.2.82", key="w-02"),
                ],
            },
            {  # data sources and other providers' resources are not machines
                "mode": "data",
                "type": "proxmox_virtual_environment_vm",
                "name": "template",
                "instances": [_bpg("tpl", 9000, "pve-a", "192.0.2.9")],
            },
            {"mode": "managed", "type": "local_file", "name": "kubeconfig", "instances": []},
        ],
    )
    vms = read_terraform_state(path)
    assert [(v.name, v.host, v.vmid, v.address) for v in vms] == [
        ("w-01", "pve-a", 201, "192.0.2.81"),
        ("w-02", "pve-b", 202, "192.0.2.82"),
    ]
    assert vms[0].resource == (
        'module.cluster.module.workers.proxmox_virtual_environment_vm.worker["w-01"]'
    )


def test_telmate_resources_with_count_and_a_single_instance(tmp_path: Path) -> None:
    path = _state(
        tmp_path,
        [
            {
                "mode": "managed",
                "type": "proxmox_vm_qemu",
                "name": "cp",
                "instances": [
                    _telmate("cp-0", 101, "pve1", "192.0.2.70", key=0),
                    _telmate("cp-1", 102, "pve2", "192.0.2.71", key=1),
                ],
            },
            {
                "module": "module.lb",
                "mode": "managed",
                "type": "proxmox_vm_qemu",
                "name": "haproxy",
                "instances": [_telmate("lb", 150, "pve1", "")],
            },
            {  # not created yet: no VMID to fence by
                "mode": "managed",
                "type": "proxmox_vm_qemu",
                "name": "pending",
                "instances": [_telmate("pending", 0, "pve1", "")],
            },
        ],
    )
    vms = read_terraform_state(path)
    assert [(v.name, v.vmid, v.host) for v in vms] == [
        ("cp-0", 101, "pve1"),
        ("cp-1", 102, "pve2"),
        ("lb", 150, "pve1"),
    ]
    assert vms[1].resource == "proxmox_vm_qemu.cp[1]"
    assert vms[2].resource == "module.lb.proxmox_vm_qemu.haproxy"
    assert vms[2].address is None


def test_the_labs_own_state_reads_back_as_its_topology(tmp_path: Path) -> None:
    topology = build_topology("tazlab")
    path = tmp_path / "lab.tfstate"
    path.write_text(json.dumps(terraform_state(topology)))
    vms = {v.name: v for v in read_terraform_state(path)}
    assert set(vms) == {n.name for n in topology.nodes}
    for node in topology.nodes:
        assert (vms[node.name].host, vms[node.name].vmid) == (node.hypervisor_host, node.vmid)
        assert vms[node.name].address == node.address


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"version": 4, "resources": [', ":1: malformed Terraform state"),
        ('{"version": 3, "resources": []}', "version 3; only 4 is read"),
        ('{"hello": "world"}', "not a Terraform state"),
    ],
)
def test_bad_state_files_are_clear_errors(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.tfstate"
    path.write_text(content)
    with pytest.raises(UsageError, match=expected):
        read_terraform_state(path)
    with pytest.raises(UsageError, match="no such Terraform state file"):
        read_terraform_state(tmp_path / "missing.tfstate")


def test_config_beats_terraform_beats_discovery(tmp_path: Path) -> None:
    _state(
        tmp_path,
        [
            {
                "mode": "managed",
                "type": "proxmox_vm_qemu",
                "name": "w",
                "instances": [
                    _telmate("a", 201, "pve1", "", key=0),
                    _telmate("b", 202, "pve1", "", key=1),
                ],
            }
        ],
    )
    (tmp_path / "fireproof.yaml").write_text(
        """
devices:
  pve: {type: fake}
  bmc: {type: fake}
inventory:
  nodes:
    a: {device: bmc, plug: "7"}
  terraform: [{path: terraform.tfstate, device: pve}]
  discover: pve
"""
    )
    config = load_config(tmp_path / "fireproof.yaml")
    listed: list[str] = []

    def list_vms(device: str) -> list[VmInfo]:
        listed.append(device)
        return [VmInfo("c", "pve2", 303), VmInfo("b", "pve9", 999)]

    inventory = build_inventory(config, ["a", "b", "c", "d"], list_vms)
    assert inventory.entries["a"].source == "config"
    assert inventory.machine("a") is not None
    assert inventory.machine("a").plug == "7"  # type: ignore[union-attr]
    assert inventory.entries["b"].source.startswith("terraform:")
    assert inventory.machine("b").vmid == 202  # type: ignore[union-attr]
    assert inventory.entries["c"].source == "discovery:pve"
    assert inventory.machine("c").host == "pve2"  # type: ignore[union-attr]
    assert inventory.machine("d") is None
    assert listed == ["pve"]
