"""Failure domains: what dies together when one Proxmox host dies.

Nodes whose VMs share a host fail together (a power supply, a kernel panic, a pulled cable).
The host of each node comes from fireproof.yaml's inventory (Terraform ``node_name``,
Proxmox discovery, pinned entries), else from the ``topology.kubernetes.io/zone`` label the
Proxmox cloud-controller-manager sets.
"""

from __future__ import annotations

from collections import Counter

from fireproof.doctor.facts import is_control_plane, name
from fireproof.doctor.model import Check, Context, Finding, NotChecked, Severity
from fireproof.kube.snapshot import Snapshot

ZONE_LABEL = "topology.kubernetes.io/zone"


def hosts_of(snap: Snapshot, ctx: Context) -> dict[str, str]:
    """Node -> Proxmox host, where the inventory or the zone label says."""
    out = {}
    for node in snap.get("nodes"):
        labels = (node.metadata.labels if node.metadata else None) or {}
        host = ctx.hosts.get(name(node)) or labels.get(ZONE_LABEL)
        if host:
            out[name(node)] = str(host)
    return out


def control_plane_majority_on_one_host(snap: Snapshot, ctx: Context) -> list[Finding]:
    control_planes = sorted(name(n) for n in snap.get("nodes") if is_control_plane(n))
    if len(control_planes) < 2:
        return []  # one member: FP-R1 says so, and there is no majority to split
    hosts = hosts_of(snap, ctx)
    unknown = [n for n in control_planes if n not in hosts]
    if unknown:
        raise NotChecked(
            f"the Proxmox host of {', '.join(unknown)} is unknown: give fireproof.yaml's "
            f"inventory (--config or --lab) or the {ZONE_LABEL} label"
        )
    quorum = len(control_planes) // 2 + 1
    findings = []
    for host, count in sorted(Counter(hosts[n] for n in control_planes).items()):
        if count < quorum:
            continue
        members = [n for n in control_planes if hosts[n] == host]
        findings.append(
            Finding(
                "FP-D1",
                Severity.CRITICAL,
                f"Proxmox host {host} runs {count} of the {len(control_planes)} control-plane "
                f"nodes ({', '.join(members)}): etcd needs {quorum} members, so losing that one "
                "host stops the cluster's API, and no remediation can run until it is back",
                tuple(f"Node/{n}" for n in members),
                tuple(f"{n} runs on {hosts[n]}" for n in control_planes),
                "give each control-plane VM its own Proxmox host (3 hosts: one each); with 2 "
                "hosts, no placement survives either host: add a third machine for the third "
                "member",
            )
        )
    return findings


CHECKS = (
    Check(
        "FP-D1",
        "control-plane-majority-on-one-host",
        Severity.CRITICAL,
        "failure domains",
        ("nodes",),
        control_plane_majority_on_one_host,
        "A Proxmox host that runs a majority of the control-plane nodes takes etcd's quorum "
        "with it when it dies: a total outage, which no remediation can work around. Needs "
        "each node's host: fireproof.yaml's inventory (--config or --lab) or the "
        "topology.kubernetes.io/zone label.",
    ),
)
