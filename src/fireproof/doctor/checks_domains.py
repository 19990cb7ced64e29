"""Failure domains: what dies together when one Proxmox host dies.

Nodes whose VMs share a host fail together (a power supply, a kernel panic, a pulled cable).
The host of each node comes from fireproof.yaml's inventory (Terraform ``node_name``,
Proxmox discovery, pinned entries), else from the ``topology.kubernetes.io/zone`` label the
Proxmox cloud-controller-manager sets.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from fireproof.doctor.facts import is_control_plane, name, ns, ref
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


def _pods_of(workload: Any, pods: list[Any]) -> list[Any]:
    """The workload's live pods: same namespace, carrying every label of its pod template."""
    template = workload.spec.template.metadata
    wanted = (template.labels if template else None) or {}
    if not wanted:
        return []
    return [
        p
        for p in pods
        if ns(p) == ns(workload)
        and p.metadata.deletionTimestamp is None
        and p.spec is not None
        and p.spec.nodeName
        and all((p.metadata.labels or {}).get(k) == v for k, v in wanted.items())
    ]


def replicas_on_one_host(snap: Snapshot, ctx: Context) -> list[Finding]:
    hosts = hosts_of(snap, ctx)
    if not hosts:
        raise NotChecked(
            "no node's Proxmox host is known: give fireproof.yaml's inventory (--config or "
            f"--lab) or the {ZONE_LABEL} label"
        )
    pods = snap.get("pods")
    findings = []
    workloads = [("Deployment", d) for d in snap.get("deployments")]
    workloads += [("StatefulSet", s) for s in snap.get("statefulsets")]
    for kind, workload in workloads:
        placed = [(p, hosts.get(p.spec.nodeName)) for p in _pods_of(workload, pods)]
        on = {host for _pod, host in placed}
        if len(placed) < 2 or len(on) != 1 or None in on:
            continue
        host = on.pop()
        findings.append(
            Finding(
                "FP-D2",
                Severity.WARNING,
                f"{kind} {ns(workload)}/{name(workload)} runs all {len(placed)} replicas on "
                f"Proxmox host {host}: hostname anti-affinity spreads them over nodes, but "
                "those nodes are VMs of one machine, and they die together",
                (ref(kind, workload), *(ref("Pod", p) for p, _h in placed[:10])),
                tuple(f"{name(p)} on {p.spec.nodeName} ({host})" for p, _h in placed[:10]),
                f"spread over hosts: topologySpreadConstraints on {ZONE_LABEL} (fireproof guard "
                "keeps it on each node, as the Proxmox cloud-controller-manager does)",
            )
        )
    return findings


def hosts_without_fencing(snap: Snapshot, ctx: Context) -> list[Finding]:
    if ctx.host_devices is None:
        raise NotChecked("needs fireproof.yaml (--config or --lab): its hosts: section")
    by_host: dict[str, list[str]] = defaultdict(list)
    ha = ctx.hypervisors or ()
    for node, host in hosts_of(snap, ctx).items():
        if host not in ctx.host_devices and not any(c.ha_fences(host) for c in ha):
            by_host[host].append(node)
    return [
        Finding(
            "FP-D3",
            Severity.WARNING,
            f"Proxmox host {host} has neither a fencing device of its own nor Proxmox HA "
            f"fencing: if the whole host dies (power supply, kernel panic), nothing can prove "
            f"its VMs off, and the volumes of {', '.join(sorted(nodes))} stay attached until "
            "the host is back",
            tuple(f"Node/{n}" for n in sorted(nodes)),
            (
                f"hosts: in fireproof.yaml names no device for {host}",
                "Proxmox HA cannot fence it: "
                + ("no HA service on it, or no quorum without it" if ha else "HA not read"),
            ),
            f"add its BMC: hosts: {{{host}: {{device: bmc-{host}}}}} with a fence-agent device "
            "(fence_ipmilan or fence_redfish), or make one of its VMs an HA resource in a "
            "cluster that keeps quorum without it (three hosts, or a QDevice)",
        )
        for host, nodes in sorted(by_host.items())
    ]


def two_hosts_without_qdevice(snap: Snapshot, ctx: Context) -> list[Finding]:
    if ctx.hypervisors is None:
        raise NotChecked(ctx.hypervisors_unread or "no Proxmox device could be read")
    ours = set(hosts_of(snap, ctx).values())
    findings = []
    for cluster in ctx.hypervisors:
        if len(cluster.members) != 2 or cluster.qdevice or not ours & set(cluster.members):
            continue  # a cluster none of this Kubernetes cluster's nodes runs on is not ours
        hosts = sorted(cluster.members)
        findings.append(
            Finding(
                "FP-D4",
                Severity.WARNING,
                f"Proxmox cluster {cluster.name or '?'} has two hosts and no QDevice: when one "
                "host dies the other loses quorum, and Proxmox refuses every power action and "
                "HA does nothing; only a host's own fencing device (BMC) can still act",
                tuple(f"ProxmoxHost/{h}" for h in hosts),
                (
                    f"device {cluster.device}: /cluster/status lists {', '.join(hosts)}",
                    "/cluster/config/qdevice: none",
                ),
                "add a QDevice (corosync-qnetd on a third machine: `pvecm qdevice setup ADDRESS`) "
                "or a third host, and give each host its BMC under hosts: in fireproof.yaml",
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
    Check(
        "FP-D2",
        "replicas-on-one-host",
        Severity.WARNING,
        "failure domains",
        ("nodes", "pods", "deployments", "statefulsets"),
        replicas_on_one_host,
        "Every running replica of a multi-replica workload sits on VMs of one Proxmox host: "
        "hostname anti-affinity does not help when the nodes share a machine.",
    ),
    Check(
        "FP-D3",
        "host-without-fencing",
        Severity.WARNING,
        "failure domains",
        ("nodes",),
        hosts_without_fencing,
        "A Proxmox host with no fencing device of its own (a BMC under hosts: in "
        "fireproof.yaml): when the whole host dies, its API answers nothing (595) and no "
        "remediation can prove its VMs off. Needs fireproof.yaml.",
    ),
    Check(
        "FP-D4",
        "two-hosts-without-qdevice",
        Severity.WARNING,
        "failure domains",
        ("nodes",),
        two_hosts_without_qdevice,
        "A Proxmox cluster of two hosts without a corosync QDevice loses quorum with either "
        "host: the survivor's pmxcfs turns read-only, power actions fail ('cluster not ready - "
        "no quorum?') and HA cannot fence or recover. Reads /cluster/status and "
        "/cluster/config/qdevice through fireproof.yaml's Proxmox devices (Sys.Audit).",
    ),
)
