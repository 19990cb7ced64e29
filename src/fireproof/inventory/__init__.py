"""Which machine each Kubernetes node runs on, and which device fences it.

Sources, strongest first: explicit entries of ``fireproof.yaml``, Terraform state files
(bpg/proxmox and Telmate/proxmox), Proxmox discovery (a VM whose name is the node's name).
"""

from fireproof.inventory.resolve import Inventory, InventoryEntry, VmInfo, build_inventory
from fireproof.inventory.terraform import TerraformVm, read_terraform_state

__all__ = [
    "Inventory",
    "InventoryEntry",
    "TerraformVm",
    "VmInfo",
    "build_inventory",
    "read_terraform_state",
]
