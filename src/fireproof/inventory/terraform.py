"""Proxmox VMs from a Terraform state file (format version 4).

Two providers are understood: bpg/proxmox (``proxmox_virtual_environment_vm``: ``name``,
``vm_id``, ``node_name``, ``ipv4_addresses``) and Telmate/proxmox (``proxmox_vm_qemu``:
``name``, ``vmid``, ``target_node``, ``default_ipv4_address``), at any module depth and with
``count`` or ``for_each`` instances.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fireproof.errors import UsageError
from fireproof.files import TERRAFORM_LIMIT, read_text

BPG = "proxmox_virtual_environment_vm"
TELMATE = "proxmox_vm_qemu"


@dataclass(frozen=True, slots=True)
class TerraformVm:
    name: str
    host: str
    vmid: int
    address: str | None
    resource: str
    """The instance's Terraform address, e.g. ``module.k8s.proxmox_vm_qemu.worker[0]``."""


VMID_MIN, VMID_MAX = 100, 999_999_999
"""Proxmox VE's valid VMID range."""


def read_terraform_state(path: Path) -> list[TerraformVm]:
    if not path.exists():
        raise UsageError(f"{path}: no such Terraform state file")
    text = read_text(path, limit=TERRAFORM_LIMIT, what="Terraform state")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: malformed Terraform state: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path}: not UTF-8 text (byte {exc.start}): not a Terraform state"
        ) from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to be a Terraform state") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resources"), list):
        raise UsageError(f"{path}: not a Terraform state (no resources list)")
    if doc.get("version") != 4:
        raise UsageError(f"{path}: Terraform state version {doc.get('version')!r}; only 4 is read")
    vms: list[TerraformVm] = []
    for resource in doc["resources"]:
        if not isinstance(resource, dict) or resource.get("mode") != "managed":
            continue
        kind = resource.get("type")
        if kind not in (BPG, TELMATE):
            continue
        prefix = f"{resource['module']}." if resource.get("module") else ""
        base = f"{prefix}{kind}.{resource.get('name', '?')}"
        instances = resource.get("instances") or []
        if not isinstance(instances, list):
            raise UsageError(f"{path}: {base}: instances must be a list, got {_type(instances)}")
        for instance in instances:
            if not isinstance(instance, dict):
                raise UsageError(f"{path}: {base}: an instance is not an object")
            vm = _instance(path, kind, base, instance)
            if vm is not None:
                vms.append(vm)
    return vms


def _vmid(path: Path, address: str, field: str, value: Any) -> int:
    """A VMID as Terraform writes it (a number, or a string of digits), else an error: 1.5
    must not become VM 1, and "abc" is not a VM."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise UsageError(f"{path}: {address}: {field} must be an integer, got {value!r}")
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise UsageError(f"{path}: {address}: {field} must be an integer, got {value!r}")
    vmid = int(text)
    if not VMID_MIN <= vmid <= VMID_MAX:
        raise UsageError(
            f"{path}: {address}: {field} {vmid} is outside Proxmox's range {VMID_MIN}-{VMID_MAX}"
        )
    return vmid


def _instance(path: Path, kind: str, base: str, instance: dict[str, Any]) -> TerraformVm | None:
    key = instance.get("index_key")
    address = base if key is None else f"{base}[{json.dumps(key)}]"
    attrs = instance.get("attributes") or {}
    if not isinstance(attrs, dict):
        raise UsageError(f"{path}: {address}: attributes is not an object")
    field = "vm_id" if kind == BPG else "vmid"
    if kind == BPG:
        vmid, host = attrs.get("vm_id"), attrs.get("node_name")
        ip = _bpg_address(attrs, path, address)
    else:
        vmid, host = attrs.get("vmid"), attrs.get("target_node")
        ip = attrs.get("default_ipv4_address") or None
        if ip is not None and not isinstance(ip, str):
            raise UsageError(
                f"{path}: {address}: default_ipv4_address must be a string, got {_type(ip)}"
            )
    name = attrs.get("name")
    node_field = "node_name" if kind == BPG else "target_node"
    for key, value in (("name", name), (node_field, host)):
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{path}: {address}: {key} must be a string, got {_type(value)}")
    if not name or not host or vmid in (None, "", 0):
        return None  # not created yet, or an id Proxmox picks later: nothing to fence by
    return TerraformVm(str(name), str(host), _vmid(path, address, field, vmid), ip, address)


def _bpg_address(attrs: dict[str, Any], path: Path, address: str) -> str | None:
    # One list per network interface, loopback first; the first non-loopback IPv4 wins.
    interfaces = attrs.get("ipv4_addresses") or []
    if not isinstance(interfaces, list) or not all(
        isinstance(i, list | None) and all(isinstance(ip, str) for ip in i or [])
        for i in interfaces
    ):
        raise UsageError(
            f"{path}: {address}: ipv4_addresses must be a list of lists of addresses, "
            f"got {json.dumps(interfaces)[:80]}"
        )
    for interface in interfaces:
        for ip in interface or []:
            if ip and not ip.startswith("127."):
                return str(ip)
    return None


def _type(value: object) -> str:
    """JSON's name for the value's type, as the user wrote it."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list) else f"a {type(value).__name__}"
