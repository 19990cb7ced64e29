"""Which machine each Kubernetes node runs on, and which device fences it.

Sources, strongest first: explicit entries of ``fireproof.yaml``, Terraform state files
(bpg/proxmox and Telmate/proxmox), Proxmox discovery (a VM whose name is the node's name).
Before a machine is fenced, :func:`verify_identity` proves it is the node's.
"""

from fireproof.inventory.identity import (
    IdentityMethod,
    IdentityMismatch,
    normalize_uuid,
    verify_identity,
)
from fireproof.inventory.resolve import (
    Inventory,
    InventoryEntry,
    InventoryError,
    VmInfo,
    build_inventory,
)
from fireproof.inventory.terraform import TerraformVm, read_terraform_state

__all__ = [
    "IdentityMethod",
    "IdentityMismatch",
    "Inventory",
    "InventoryEntry",
    "InventoryError",
    "TerraformVm",
    "VmInfo",
    "build_inventory",
    "normalize_uuid",
    "read_terraform_state",
    "verify_identity",
]
