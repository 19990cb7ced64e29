"""Prove that a machine is the node before fencing it.

An inventory source can be wrong by one character (a Terraform ``vm_id`` that names another
VM, a clone that kept its name). Fencing that machine would "verify off" a node that still runs,
and releasing its volumes would start a second writer. So before any power action that leads to
a release, the device must say which machine it is:

1. the VM's SMBIOS UUID equals the node's ``status.nodeInfo.systemUUID`` (the kubelet reads it
   from the firmware: Talos and every Linux kubelet report it);
2. where either side has no UUID, the VM's name equals the node's name;
3. a device that cannot identify machines (a BMC behind a fence agent) is trusted only for a
   mapping the operator pinned in ``fireproof.yaml`` (``inventory.nodes``).
"""

from __future__ import annotations

import enum

from fireproof.errors import PermanentError
from fireproof.fencing import Fencer, Identifier, Machine


class IdentityMethod(enum.StrEnum):
    UUID = "uuid"
    """The VM's SMBIOS UUID equals the node's systemUUID."""
    NAME = "name"
    """No UUID on one side; the VM's name equals the node's."""
    PINNED = "pinned"
    """The device cannot identify machines; fireproof.yaml's inventory.nodes names it."""


class IdentityMismatch(PermanentError):
    """The machine behind the mapping is not (provably) the node: fencing is refused."""


def normalize_uuid(value: str | None) -> str | None:
    text = (value or "").strip().lower()
    return text or None


def _swapped(uuid: str) -> str:
    # SMBIOS before 2.6 stored the first three fields little-endian; some firmware and old
    # dmidecode still show that form. The same machine, written the other way round.
    parts = uuid.split("-")
    if len(parts) != 5:
        return uuid
    flip = ["".join(reversed([p[i : i + 2] for i in range(0, len(p), 2)])) for p in parts[:3]]
    return "-".join([*flip, *parts[3:]])


def verify_identity(
    node: str, system_uuid: str | None, machine: Machine, fencer: Fencer, source: str
) -> IdentityMethod:
    """How the mapping node -> machine was proven; raises :class:`IdentityMismatch`."""
    fix = (
        f"fix the mapping of {node} in {source.removeprefix('terraform:')} or pin it in "
        f"fireproof.yaml (inventory.nodes.{node}); see `fireproof inventory show`"
    )
    if not isinstance(fencer, Identifier):
        if source == "config":
            return IdentityMethod.PINNED
        raise IdentityMismatch(
            f"{node}: device {fencer.name!r} cannot say which machine {machine.label} is, and "
            f"the mapping comes from {source}",
            hint=f"pin it in fireproof.yaml: inventory.nodes.{node}: "
            f"{{device: {machine.device}, plug: …}}",
        )
    found = fencer.identify(machine)
    if found.template:
        raise IdentityMismatch(
            f"{node}: {machine.label} is a Proxmox template, not a running machine", hint=fix
        )
    node_uuid = normalize_uuid(system_uuid)
    vm_uuid = normalize_uuid(found.uuid)
    vm_name = found.name or "(no name)"
    if node_uuid and vm_uuid:
        if vm_uuid in (node_uuid, _swapped(node_uuid)):
            return IdentityMethod.UUID
        raise IdentityMismatch(
            f"{node} is not {machine.label} ({vm_name}): the node's systemUUID is {node_uuid}, "
            f"the VM's SMBIOS UUID is {vm_uuid}",
            hint=fix,
        )
    if found.name == node:
        return IdentityMethod.NAME
    raise IdentityMismatch(
        f"{node} is not {machine.label}: the VM is named {vm_name} and no SMBIOS UUID proves "
        "otherwise",
        hint=fix,
    )
