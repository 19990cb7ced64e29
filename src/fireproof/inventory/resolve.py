"""Merge the inventory sources into one node -> machine map."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fireproof.config import Config
from fireproof.fencing import Machine
from fireproof.inventory.terraform import read_terraform_state


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
    """Where the mapping came from: ``config``, ``terraform:PATH``, ``discovery:DEVICE``."""


@dataclass(frozen=True, slots=True)
class Inventory:
    entries: dict[str, InventoryEntry]

    def machine(self, node: str) -> Machine | None:
        entry = self.entries.get(node)
        return entry.machine if entry else None


def build_inventory(
    config: Config, nodes: Iterable[str], list_vms: VmLister | None = None
) -> Inventory:
    wanted = list(nodes)
    found: dict[str, InventoryEntry] = {}
    for node, entry in config.inventory.nodes.items():
        machine = Machine(node, entry.device, entry.host, entry.vmid, entry.plug)
        found[node] = InventoryEntry(node, machine, "config")
    for source in config.inventory.terraform:
        for vm in read_terraform_state(source.path):
            if vm.name not in found:
                machine = Machine(vm.name, source.device, vm.host, vm.vmid, address=vm.address)
                found[vm.name] = InventoryEntry(vm.name, machine, f"terraform:{source.path}")
    missing = [n for n in wanted if n not in found]
    if missing and list_vms is not None:
        for device in config.inventory.discover:
            by_name = {vm.name: vm for vm in list_vms(device)}
            for node in missing:
                listed = by_name.get(node)
                if listed is not None and node not in found:
                    machine = Machine(node, device, listed.host, listed.vmid)
                    found[node] = InventoryEntry(node, machine, f"discovery:{device}")
    entries = {n: found.get(n, InventoryEntry(n, None, "none")) for n in wanted}
    # Mappings for machines the cluster does not list (yet) are kept: fence works by name too.
    entries.update({n: e for n, e in found.items() if n not in entries})
    return Inventory(entries)
