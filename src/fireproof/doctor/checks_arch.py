"""Architecture risks: the shapes that turn one dead machine into an outage."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from fireproof.doctor.facts import (
    claims,
    has_spread,
    internal_ip,
    is_control_plane,
    is_ingress_controller,
    name,
    node_ready,
    ns,
    ref,
    required_hostname_anti_affinity,
    rwo_claims,
    template_claims,
    tolerates_control_plane,
)
from fireproof.doctor.model import Check, Context, Finding, NotChecked, Severity
from fireproof.kube.snapshot import Snapshot

CRITICAL_NAMESPACES = ("kube-system",)


def control_plane_count(snap: Snapshot, ctx: Context) -> list[Finding]:
    members = [n for n in snap.get("nodes") if is_control_plane(n)]
    count = len(members)
    if count == 0 or (count >= 3 and count % 2 == 1):
        return []
    why = (
        "below 3: losing one member loses etcd quorum"
        if count < 3
        else "even: one more member than an odd count adds no fault tolerance"
    )
    return [
        Finding(
            "FP-R1",
            Severity.CRITICAL if count < 3 else Severity.WARNING,
            f"{count} control-plane / etcd member(s), {why}",
            tuple(f"Node/{name(n)}" for n in members),
            (f"control-plane nodes: {', '.join(name(n) for n in members)}",),
            "run 3 (or 5) control-plane nodes",
        )
    ]


def _workloads(snap: Snapshot) -> list[tuple[str, Any]]:
    return [("Deployment", d) for d in snap.get("deployments")] + [
        ("StatefulSet", s) for s in snap.get("statefulsets")
    ]


def anti_affinity_capacity(snap: Snapshot, ctx: Context) -> list[Finding]:
    workers = [n for n in snap.get("nodes") if node_ready(n) == "True" and not is_control_plane(n)]
    findings = []
    for kind, obj in _workloads(snap):
        replicas = obj.spec.replicas or 1
        template = obj.spec.template
        if not required_hostname_anti_affinity(template) or tolerates_control_plane(template):
            continue
        if replicas > len(workers):
            findings.append(
                Finding(
                    "FP-R2",
                    Severity.WARNING,
                    f"{kind} {ns(obj)}/{name(obj)} wants {replicas} replicas on distinct nodes "
                    f"but only {len(workers)} healthy workers exist",
                    (ref(kind, obj),),
                    (f"replicas {replicas}, required anti-affinity on kubernetes.io/hostname",),
                    "add workers, lower the replicas, or make the anti-affinity preferred",
                )
            )
    return findings


def rwo_multi_replica(snap: Snapshot, ctx: Context) -> list[Finding]:
    rwo = rwo_claims(snap.get("persistentvolumeclaims"))
    scaled = {
        (ns(h), h.spec.scaleTargetRef.name)
        for h in snap.get("horizontalpodautoscalers")
        if h.spec and h.spec.scaleTargetRef.kind == "Deployment"
    }
    findings = []
    for deployment in snap.get("deployments"):
        mounted = [
            c for c in template_claims(deployment.spec.template) if (ns(deployment), c) in rwo
        ]
        if not mounted:
            continue
        replicas = deployment.spec.replicas or 1
        has_hpa = (ns(deployment), name(deployment)) in scaled
        if replicas > 1 or has_hpa:
            findings.append(
                Finding(
                    "FP-R3",
                    Severity.CRITICAL,
                    f"Deployment {ns(deployment)}/{name(deployment)} "
                    + (f"has {replicas} replicas" if replicas > 1 else "is autoscaled")
                    + f" but mounts ReadWriteOnce claim(s) {', '.join(mounted)}: only one node "
                    "can mount them, the other replicas hang in ContainerCreating",
                    (
                        ref("Deployment", deployment),
                        *(f"PersistentVolumeClaim/{ns(deployment)}/{c}" for c in mounted),
                    ),
                    (
                        f"replicas {replicas}"
                        + (", HorizontalPodAutoscaler present" if has_hpa else ""),
                    ),
                    "use a StatefulSet with volumeClaimTemplates, a ReadWriteMany volume, or 1 "
                    "replica (and keep state out of the pod)",
                )
            )
    return findings


def ingress_on_rwo(snap: Snapshot, ctx: Context) -> list[Finding]:
    rwo = rwo_claims(snap.get("persistentvolumeclaims"))
    findings = []
    for deployment in snap.get("deployments"):
        if not is_ingress_controller(deployment) or (deployment.spec.replicas or 1) != 1:
            continue
        mounted = [
            c for c in template_claims(deployment.spec.template) if (ns(deployment), c) in rwo
        ]
        if mounted:
            findings.append(
                Finding(
                    "FP-R4",
                    Severity.WARNING,
                    f"ingress controller {ns(deployment)}/{name(deployment)} runs 1 replica with "
                    f"ReadWriteOnce storage ({', '.join(mounted)}): it cannot scale, and when "
                    "its node dies all ingress stops until the volume is released",
                    (ref("Deployment", deployment),),
                    ("replicas 1, RWO claim " + ", ".join(mounted),),
                    _ingress_fix(deployment),
                )
            )
    return findings


def _ingress_fix(deployment: Any) -> str:
    if "traefik" in name(deployment).lower():
        return (
            "move the certificates to TLS Secrets under cert-manager, same certificates, none "
            f"re-issued: `fireproof migrate traefik-acme -n {ns(deployment)} --deployment "
            f"{name(deployment)} --from-file acme.json` (then 3 replicas, spread)"
        )
    return "keep ACME state in Secrets or cert-manager, then run 2+ replicas, spread over nodes"


def no_spread(snap: Snapshot, ctx: Context) -> list[Finding]:
    findings = []
    for kind, obj in _workloads(snap):
        replicas = obj.spec.replicas or 1
        if replicas > 1 and not has_spread(obj.spec.template):
            findings.append(
                Finding(
                    "FP-R5",
                    Severity.INFO,
                    f"{kind} {ns(obj)}/{name(obj)} runs {replicas} replicas without anti-affinity "
                    "or topology spread: they may all land on one node",
                    (ref(kind, obj),),
                    (f"replicas {replicas}, no podAntiAffinity, no topologySpreadConstraints",),
                    "add topologySpreadConstraints on kubernetes.io/hostname "
                    "(whenUnsatisfiable: ScheduleAnyway)",
                )
            )
    return findings


def _selects(pdb: Any, labels: dict[str, str]) -> bool:
    selector = pdb.spec.selector if pdb.spec else None
    wanted = (selector.matchLabels if selector else None) or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def no_pdb(snap: Snapshot, ctx: Context) -> list[Finding]:
    pdbs = snap.get("poddisruptionbudgets")
    findings = []
    for kind, obj in _workloads(snap):
        critical = (
            kind == "StatefulSet" or is_ingress_controller(obj) or ns(obj) in CRITICAL_NAMESPACES
        )
        if not critical:
            continue
        labels = (obj.spec.template.metadata.labels if obj.spec.template.metadata else None) or {}
        if any(ns(p) == ns(obj) and _selects(p, labels) for p in pdbs):
            continue
        findings.append(
            Finding(
                "FP-R6",
                Severity.INFO,
                f"{kind} {ns(obj)}/{name(obj)} has no PodDisruptionBudget: a drain may take all "
                "of it down at once",
                (ref(kind, obj),),
                ("no PodDisruptionBudget selects its pod labels",),
                "add a PodDisruptionBudget (maxUnavailable: 1)",
            )
        )
    return findings


def kubeconfig_single_node(snap: Snapshot, ctx: Context) -> list[Finding]:
    if ctx.kubeconfig is None or not ctx.kubeconfig.is_file():
        return []
    try:
        doc = yaml.safe_load(Path(ctx.kubeconfig).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    addresses = {internal_ip(n): name(n) for n in snap.get("nodes") if is_control_plane(n)}
    findings = []
    for entry in doc.get("clusters") or []:
        server = str((entry.get("cluster") or {}).get("server") or "")
        host = urlparse(server).hostname
        if host and host in addresses and host != ctx.vip:
            findings.append(
                Finding(
                    "FP-R7",
                    Severity.WARNING,
                    f"kubeconfig cluster {entry.get('name')!r} points at one control-plane node "
                    f"({addresses[host]}), not at a VIP or load balancer: when that node dies, "
                    "kubectl dies with it",
                    (f"Node/{addresses[host]}",),
                    (f"{ctx.kubeconfig}: server {server}",),
                    f"point it at the VIP{' ' + ctx.vip if ctx.vip else ''} "
                    "(Talos: `talosctl config endpoint`)",
                )
            )
    return findings


def longhorn_do_nothing(snap: Snapshot, ctx: Context) -> list[Finding]:
    setting = next(
        (s for s in snap.get("longhorn-settings") if name(s) == "node-down-pod-deletion-policy"),
        None,
    )
    if setting is None:
        return []
    value = setting.value or "do-nothing"
    nodes = [name(n) for n in snap.get("nodes")]
    unfenced = [n for n in nodes if ctx.fenced_nodes is None or n not in ctx.fenced_nodes]
    if value != "do-nothing" or not unfenced:
        return []
    scope = (
        "no fencing is configured"
        if len(unfenced) == len(nodes)
        else (f"{len(unfenced)} of {len(nodes)} nodes have no fencing device")
    )
    return [
        Finding(
            "FP-R8",
            Severity.WARNING,
            f"Longhorn's node-down-pod-deletion-policy is do-nothing and {scope}: pods of a dead "
            "node keep their volumes until someone intervenes",
            (ref("Setting", setting),),
            (
                f"node-down-pod-deletion-policy: {value}",
                f"nodes without fencing: {', '.join(unfenced[:10])}",
            ),
            "configure fencing in fireproof.yaml (then fireproof heal / guard), or set the policy "
            "to delete-both-statefulset-and-deployment-pod (about 6.5 minutes, unfenced)",
        )
    ]


def rwo_without_fencing(snap: Snapshot, ctx: Context) -> list[Finding]:
    if ctx.fenced_nodes is None:
        return []
    rwo = rwo_claims(snap.get("persistentvolumeclaims"))
    exposed: dict[str, list[str]] = {}
    for pod in snap.get("pods"):
        node = pod.spec.nodeName if pod.spec else None
        if node and node not in ctx.fenced_nodes and any((ns(pod), c) in rwo for c in claims(pod)):
            exposed.setdefault(node, []).append(f"{ns(pod)}/{name(pod)}")
    return [
        Finding(
            "FP-R9",
            Severity.WARNING,
            f"{node} runs ReadWriteOnce workloads ({', '.join(pods[:5])}) but has no fencing "
            "device: if it dies, nothing can safely release their volumes",
            (f"Node/{node}",),
            (f"pods with RWO claims: {', '.join(pods[:10])}",),
            "map the node to its machine in fireproof.yaml (inventory.nodes, a Terraform state, "
            "or Proxmox discovery); check with fireproof inventory show",
        )
        for node, pods in sorted(exposed.items())
    ]


def encryption_at_rest(snap: Snapshot, ctx: Context) -> list[Finding]:
    apiservers = [
        p
        for p in snap.get("pods")
        if ns(p) == "kube-system"
        and ((p.metadata.labels or {}).get("component") == "kube-apiserver")
    ]
    if not apiservers:
        raise NotChecked("no kube-apiserver pod is visible: its arguments cannot be read")
    findings = []
    for pod in apiservers:
        args = [
            a
            for c in (pod.spec.containers if pod.spec else [])
            for a in [*(c.command or []), *(c.args or [])]
        ]
        if not any(a.startswith("--encryption-provider-config") for a in args):
            findings.append(
                Finding(
                    "FP-R10",
                    Severity.WARNING,
                    f"{name(pod)} runs without --encryption-provider-config: Secrets are stored "
                    "in etcd in plain text",
                    (ref("Pod", pod),),
                    ("kube-apiserver arguments have no --encryption-provider-config",),
                    "enable secrets encryption at rest (Talos: cluster.secretboxEncryptionSecret)",
                )
            )
    return findings


CHECKS = (
    Check(
        "FP-R1",
        "control-plane-quorum",
        Severity.CRITICAL,
        "architecture",
        ("nodes",),
        control_plane_count,
        "etcd needs a majority of its members. 1 or 2 members survive no failure; an even "
        "count tolerates no more failures than one member fewer.",
    ),
    Check(
        "FP-R2",
        "anti-affinity-capacity",
        Severity.WARNING,
        "architecture",
        ("nodes", "deployments", "statefulsets"),
        anti_affinity_capacity,
        "A workload with required hostname anti-affinity and more replicas than healthy "
        "workers leaves replicas Pending, worst exactly when a node has died.",
    ),
    Check(
        "FP-R3",
        "rwo-multi-replica",
        Severity.CRITICAL,
        "architecture",
        ("deployments", "persistentvolumeclaims", "horizontalpodautoscalers"),
        rwo_multi_replica,
        "A Deployment with more than one replica (or an HPA) mounting a ReadWriteOnce claim: "
        "only one node can mount it, so extra replicas never start and scaling fails.",
    ),
    Check(
        "FP-R4",
        "ingress-on-rwo-storage",
        Severity.WARNING,
        "architecture",
        ("deployments", "persistentvolumeclaims"),
        ingress_on_rwo,
        "A single-replica ingress controller on ReadWriteOnce storage (Traefik's acme.json "
        "case) is a single point of failure that cannot be scaled out of.",
    ),
    Check(
        "FP-R5",
        "replicas-without-spread",
        Severity.INFO,
        "architecture",
        ("deployments", "statefulsets"),
        no_spread,
        "Several replicas without anti-affinity or topology spread may share a node and die "
        "together.",
    ),
    Check(
        "FP-R6",
        "critical-without-pdb",
        Severity.INFO,
        "architecture",
        ("deployments", "statefulsets", "poddisruptionbudgets"),
        no_pdb,
        "StatefulSets, ingress controllers and kube-system workloads without a "
        "PodDisruptionBudget can be fully evicted by one drain.",
    ),
    Check(
        "FP-R7",
        "kubeconfig-single-node",
        Severity.WARNING,
        "architecture",
        ("nodes",),
        kubeconfig_single_node,
        "A kubeconfig whose server is one control-plane node's address loses the cluster "
        "with that node; it should name the VIP or a load balancer. Only the file is read; "
        "its servers are never contacted.",
    ),
    Check(
        "FP-R8",
        "longhorn-do-nothing",
        Severity.WARNING,
        "architecture",
        ("longhorn-settings",),
        longhorn_do_nothing,
        "Longhorn's node-down-pod-deletion-policy defaults to do-nothing: with no fencing, "
        "pods of a dead node keep their volumes forever.",
    ),
    Check(
        "FP-R9",
        "rwo-without-fencing",
        Severity.WARNING,
        "architecture",
        ("pods", "persistentvolumeclaims"),
        rwo_without_fencing,
        "A node running ReadWriteOnce workloads with no fencing device in the inventory "
        "cannot be healed safely. Needs fireproof.yaml (--config or --lab).",
    ),
    Check(
        "FP-R10",
        "secrets-encryption",
        Severity.WARNING,
        "architecture",
        ("pods",),
        encryption_at_rest,
        "Reads kube-apiserver's arguments from its mirror pods in kube-system; flags a "
        "missing --encryption-provider-config. Where no apiserver pod is visible (managed "
        "or hidden control planes) it reports 'not checked', never 'healthy'.",
    ),
)
