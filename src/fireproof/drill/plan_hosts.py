"""The nodes a host fault takes down: every node whose VM the host runs, and the host's own
fencing device (``hosts:`` in fireproof.yaml)."""

from __future__ import annotations

from typing import Any

from fireproof.drill.planmodel import HostTarget, LabHooks, node_of, refuse
from fireproof.drill.spec import DrillSpec, Fault, Recovery, SpecError, TargetSpec
from fireproof.fencing import Machine
from fireproof.wiring import Target


def host_targets(
    target: Target,
    spec: DrillSpec,
    lab: LabHooks | None,
    workloads: dict[str, tuple[Any, dict[str, str]]],
) -> tuple[dict[str, TargetSpec], list[HostTarget]]:
    """Each host target's host, and every node whose VM it runs (they all go down with it)."""
    cluster = target.cluster
    if spec.fault is Fault.HOST_HANG and lab is None:
        raise SpecError(f"{spec.path}: fault: host-hang works in the lab only (`--lab`)")
    if spec.recovery is Recovery.HEAL:
        raise SpecError(
            f"{spec.path}: recovery: heal fences VMs through their hypervisor, which a dead "
            "host's API cannot answer",
            hint="use recovery: guard (it fences the host through its BMC) or none",
        )
    all_names = sorted(n.metadata.name for n in cluster.nodes() if n.metadata and n.metadata.name)
    inventory = target.inventory(all_names)
    host_of = {
        name: entry.machine.host
        for name, entry in inventory.entries.items()
        if entry.machine is not None and entry.machine.host
    }
    names: dict[str, TargetSpec] = {}
    hosts: list[HostTarget] = []
    for item in spec.targets:
        host = item.host
        if item.host_of is not None:
            pods = cluster.workload_pods(item.host_of.namespace, workloads[item.host_of.label][1])
            node = node_of(TargetSpec(running=item.host_of, where=item.where), pods)
            host = host_of.get(node)
            if host is None:
                raise refuse(item, f"the inventory names no Proxmox host for {node}")
        assert host is not None  # noqa: S101 - a host target names one, or its workload's
        members = sorted(n for n, h in host_of.items() if h == host)
        if not members:
            raise refuse(item, f"no node of the inventory runs on Proxmox host {host}")
        for name in members:
            names.setdefault(name, item)
        if any(h.host == host for h in hosts):
            continue
        entry = target.config.hosts.get(host)
        if spec.fault is Fault.HOST_POWER_OFF and entry is None:
            raise refuse(
                item,
                f"host {host} has no fencing device of its own: nothing could power it off, "
                "nor back on",
                hint=f"name its BMC under hosts: in fireproof.yaml ({host}: {{device: …}})",
            )
        machine = Machine(node=host, device=entry.device, host=host) if entry else None
        fencer = target.fencer(entry.device) if entry else None
        why = f"runs {item.host_of.label}" if item.host_of else "named in the spec"
        hosts.append(HostTarget(host, machine, fencer, why))
    return names, hosts
