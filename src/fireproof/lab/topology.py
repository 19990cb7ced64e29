"""Cluster shapes the lab can build: nodes, their VMs and hypervisor hosts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from fireproof.errors import UsageError
from fireproof.lab.addresses import documentation_address


class Role(StrEnum):
    CONTROL_PLANE = "control-plane"
    WORKER = "worker"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One Kubernetes node and the VM that runs it."""

    name: str
    role: Role
    address: str
    """InternalIP (documentation range: data only, never contacted)."""
    hypervisor_host: str
    """Proxmox node (host) that runs the VM."""
    vmid: int
    ha_managed: bool = False
    """Whether Proxmox HA manages the VM (its stop task then ends before the VM is off)."""

    @property
    def system_uuid(self) -> str:
        """The VM's SMBIOS UUID, which its kubelet reports as ``nodeInfo.systemUUID``."""
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.name}.vm.fireproof.lab"))


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    description: str
    nodes: tuple[NodeSpec, ...]
    vip: str | None = None
    """Virtual IP in front of the control plane, if the cluster has one."""

    @property
    def control_plane(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.role is Role.CONTROL_PLANE)

    @property
    def workers(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.role is Role.WORKER)

    def node(self, name: str) -> NodeSpec | None:
        return next((n for n in self.nodes if n.name == name), None)


def _workers(
    prefix: str,
    count: int,
    first_address: int,
    hosts: tuple[str, ...],
    first_vmid: int,
    reserved: frozenset[str] = frozenset(),
) -> tuple[NodeSpec, ...]:
    addresses = (documentation_address(i) for i in range(first_address, 3 * 253))
    free = (a for a in addresses if a not in reserved)
    # Spread across hypervisor hosts round-robin, as a Terraform count/for_each usually does.
    return tuple(
        NodeSpec(
            name=f"{prefix}-worker-{i + 1:02d}",
            role=Role.WORKER,
            address=next(free),
            hypervisor_host=hosts[i % len(hosts)],
            vmid=first_vmid + i,
        )
        for i in range(count)
    )


def _hosts(count: int) -> tuple[str, ...]:
    return tuple(f"pve-{i + 1:02d}" for i in range(count))


def minimal(workers: int | None = None, hosts: int | None = None) -> Topology:
    count = 3 if workers is None else workers
    on = _hosts(1 if hosts is None else hosts)
    cp = NodeSpec("lab-cp-01", Role.CONTROL_PLANE, documentation_address(10), "pve-01", 100)
    return Topology(
        name="minimal",
        description=f"1 control-plane + {count} workers on {len(on)} Proxmox host(s)",
        nodes=(cp, *_workers("lab", count, 20, on, 200)),
    )


_TAZLAB_VIP = "192.0.2.250"


def tazlab(workers: int | None = None, hosts: int | None = None) -> Topology:
    count = 4 if workers is None else workers
    hosts_ = _hosts(2 if hosts is None else hosts)
    # Addresses follow the incident: control plane at .71-.73, VIP .250.
    cps = tuple(
        NodeSpec(
            f"tazlab-cp-{i + 1:02d}",
            Role.CONTROL_PLANE,
            documentation_address(70 + i),
            hosts_[i % len(hosts_)],
            101 + i,
            ha_managed=True,
        )
        for i in range(3)
    )
    plain = _workers("tazlab", count, 80, hosts_, 201, frozenset({_TAZLAB_VIP}))
    # Every second worker is an HA resource too, so both Proxmox stop paths are exercised.
    ha_workers = tuple(
        NodeSpec(w.name, w.role, w.address, w.hypervisor_host, w.vmid, ha_managed=i % 2 == 1)
        for i, w in enumerate(plain)
    )
    return Topology(
        name="tazlab",
        description=f"3 control-plane + {count} workers on {len(hosts_)} Proxmox hosts, "
        "VIP 192.0.2.250",
        nodes=(*cps, *ha_workers),
        vip=_TAZLAB_VIP,
    )


MAX_WORKERS = 600
MAX_HOSTS = 9
TOPOLOGIES: dict[str, Callable[[int | None, int | None], Topology]] = {
    "minimal": minimal,
    "tazlab": tazlab,
}


def build_topology(name: str, workers: int | None = None, hosts: int | None = None) -> Topology:
    try:
        factory = TOPOLOGIES[name]
    except KeyError:
        known = ", ".join(sorted(TOPOLOGIES))
        raise UsageError(f"unknown topology {name!r} (known: {known})") from None
    if workers is not None and not 0 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be between 0 and {MAX_WORKERS}, got {workers}")
    if hosts is not None and not 1 <= hosts <= MAX_HOSTS:
        raise UsageError(f"--hosts must be between 1 and {MAX_HOSTS}, got {hosts}")
    return factory(workers, hosts)
