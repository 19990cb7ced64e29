"""Merge the inventory sources into one node -> machine map.

A mapping that could name the wrong machine is never used: a name that matches several VMs, or
one VM claimed by several nodes, makes those entries errors (fail closed), because fencing the
wrong machine "verifies off" a node that still runs and writes to its volumes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from fireproof.config import Config
from fireproof.errors import PermanentError
from fireproof.fencing import Machine
from fireproof.inventory.terraform import TerraformVm, read_terraform_state


class InventoryError(PermanentError):
    """The inventory cannot say for sure which machine a node runs on."""


@dataclass(frozen=True, slots=True)
class VmInfo:
    """A VM as a hypervisor lists it (for discovery by name)."""

    name: str
    host: str
    vmid: int


VmLister = Callable[[str], list[VmInfo]]
"""Lists the VMs a device can see (by device name)."""


@dataclass(frozen=True, slots=True)
class InventoryEntry:
    node: str
    machine: Machine | None
    source: str
    """Where the mapping came from: ``config``, ``terraform:PATH``, ``provider-id:DEVICE`` (the
    node's ``proxmox://REGION/VMID``), ``discovery:DEVICE`` (the VM's name)."""
    problem: str | None = None
    """Why the mapping must not be used (ambiguous name, one VM for several nodes)."""


def _pin_hint(node: str, device: str) -> str:
    return (
        f"pin the machine in fireproof.yaml: inventory.nodes.{node}: "
        f"{{device: {device}, host: HOST, vmid: VMID}}"
    )


@dataclass(frozen=True, slots=True)
class Inventory:
    entries: dict[str, InventoryEntry]

    def entry(self, node: str) -> InventoryEntry | None:
        return self.entries.get(node)

    def machine(self, node: str) -> Machine | None:
        """The node's machine; raises :class:`InventoryError` when the mapping is ambiguous."""
        entry = self.entries.get(node)
        if entry is None:
            return None
        if entry.problem:
            device = entry.machine.device if entry.machine else "DEVICE"
            raise InventoryError(f"{node}: {entry.problem}", hint=_pin_hint(node, device))
        return entry.machine

    @property
    def problems(self) -> list[InventoryEntry]:
        return [e for e in self.entries.values() if e.problem]


PROVIDER_ID = re.compile(r"proxmox://(?P<region>[^/]+)/(?P<vmid>[0-9]+)")
"""The Proxmox cloud-controller-manager's ``spec.providerID``: ``proxmox://REGION/VMID``."""


def build_inventory(
    config: Config,
    nodes: Iterable[str],
    list_vms: VmLister | None = None,
    provider_ids: Mapping[str, str] | None = None,
) -> Inventory:
    wanted = list(nodes)
    found: dict[str, InventoryEntry] = {}
    for node, entry in config.inventory.nodes.items():
        machine = Machine(node, entry.device, entry.host, entry.vmid, entry.plug)
        found[node] = InventoryEntry(node, machine, "config")
    for source in config.inventory.terraform:
        by_name: dict[str, list[TerraformVm]] = defaultdict(list)
        for vm in read_terraform_state(source.path):
            by_name[vm.name].append(vm)
        for name, vms in by_name.items():
            if name in found:
                continue
            first = vms[0]
            machine = Machine(name, source.device, first.host, first.vmid, address=first.address)
            problem = None
            if len(vms) > 1:
                listed = ", ".join(f"VM {v.vmid} ({v.resource})" for v in vms)
                problem = f"the Terraform state {source.path} names {len(vms)} VMs {name}: {listed}"
            found[name] = InventoryEntry(name, machine, f"terraform:{source.path}", problem)
    missing = [n for n in wanted if n not in found]
    if missing and list_vms is not None:
        for device in config.inventory.discover:
            listed_vms: dict[str, list[VmInfo]] = defaultdict(list)
            by_vmid: dict[int, VmInfo] = {}
            for info in list_vms(device):
                listed_vms[info.name].append(info)
                by_vmid[info.vmid] = info
            # A CCM's providerID names the VM by its VMID: stronger than its name.
            for node in missing:
                match = PROVIDER_ID.fullmatch((provider_ids or {}).get(node, ""))
                named = by_vmid.get(int(match["vmid"])) if match else None
                if named is None or node in found:
                    continue
                machine = Machine(node, device, named.host, named.vmid)
                found[node] = InventoryEntry(node, machine, f"provider-id:{device}")
            for node in missing:
                candidates = listed_vms.get(node, [])
                if not candidates or node in found:
                    continue
                pick = candidates[0]
                machine = Machine(node, device, pick.host, pick.vmid)
                problem = None
                if len(candidates) > 1:
                    vmids = ", ".join(f"VM {v.vmid} on {v.host}" for v in candidates)
                    problem = (
                        f"{len(candidates)} Proxmox VMs of device {device!r} are named "
                        f"{node}: {vmids}"
                    )
                found[node] = InventoryEntry(node, machine, f"discovery:{device}", problem)
    entries = {n: found.get(n, InventoryEntry(n, None, "none")) for n in wanted}
    # Mappings for machines the cluster does not list (yet) are kept: fence works by name too.
    entries.update({n: e for n, e in found.items() if n not in entries})
    return Inventory(_flag_shared_machines(entries))


def _flag_shared_machines(entries: dict[str, InventoryEntry]) -> dict[str, InventoryEntry]:
    """One machine mapped to several nodes: every one of those mappings is suspect."""
    claims: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, entry in entries.items():
        m = entry.machine
        if m is None:
            continue
        # VMIDs are unique in a Proxmox cluster, whatever host a source claims.
        key = str(m.vmid) if m.vmid is not None else (m.plug or "")
        if key:
            claims[(m.device, key)].append(name)
    flagged = dict(entries)
    for (device, _key), names in claims.items():
        if len(names) < 2:
            continue
        machine = entries[names[0]].machine
        label = machine.label if machine else "?"
        problem = f"{label} of device {device!r} is mapped to {len(names)} nodes: " + ", ".join(
            f"{n} ({entries[n].source})" for n in sorted(names)
        )
        for name in names:
            flagged[name] = replace(entries[name], problem=entries[name].problem or problem)
    return flagged
