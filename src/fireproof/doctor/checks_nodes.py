"""Dead nodes and stuck storage: phase 2 of the incident."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fireproof.doctor.facts import (
    age,
    claims,
    name,
    node_ready,
    ns,
    ref,
    unhealthy_nodes,
    waiting_reason,
)
from fireproof.doctor.model import Check, Context, Finding, Severity
from fireproof.kube.snapshot import Snapshot

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
# The attach/detach controller's refusal of an RWO volume; v1.37 renamed it (kubernetes#138836).
ATTACH_REFUSALS = ("Multi-Attach error for volume", "Waiting for detach for volume")


def _heal(node: str) -> str:
    return f"fireproof heal node {node}  (fences it, verifies it is off, releases its volumes)"


def running_on_dead_nodes(snap: Snapshot, ctx: Context) -> list[Finding]:
    dead = unhealthy_nodes(snap.get("nodes"))
    by_node: dict[str, list[Any]] = defaultdict(list)
    for pod in snap.get("pods"):
        node = pod.spec.nodeName if pod.spec else None
        alive = pod.metadata is not None and pod.metadata.deletionTimestamp is None
        if node in dead and pod.status and pod.status.phase == "Running" and alive:
            by_node[node].append(pod)
    return [
        Finding(
            "FP-N1",
            Severity.WARNING,
            f"{node} is {node_ready(dead[node])} but {len(pods)} pod(s) on it are still "
            "reported Running: nobody knows whether they run",
            (f"Node/{node}", *(ref("Pod", p) for p in pods[:20])),
            (
                f"Ready={node_ready(dead[node])}",
                "pods: " + ", ".join(f"{ns(p)}/{name(p)}" for p in pods[:10]),
            ),
            _heal(node),
        )
        for node, pods in sorted(by_node.items())
    ]


def stuck_terminating(snap: Snapshot, ctx: Context) -> list[Finding]:
    dead = unhealthy_nodes(snap.get("nodes"))
    findings = []
    for pod in snap.get("pods"):
        node = pod.spec.nodeName if pod.spec else None
        deleted = pod.metadata.deletionTimestamp if pod.metadata else None
        if node not in dead or deleted is None:
            continue
        grace = pod.metadata.deletionGracePeriodSeconds or 0
        waited = age(deleted, ctx.now).total_seconds() + grace
        if waited < ctx.stuck_after.total_seconds():
            continue
        owner = next((o for o in (pod.metadata.ownerReferences or []) if o.controller), None)
        blocked = (
            " Its StatefulSet will not recreate it until it is gone."
            if owner and owner.kind == "StatefulSet"
            else ""
        )
        findings.append(
            Finding(
                "FP-N2",
                Severity.CRITICAL,
                f"{ns(pod)}/{name(pod)} is stuck Terminating on {node}, which is "
                f"{node_ready(dead[node])}: no kubelet will ever confirm.{blocked}",
                (ref("Pod", pod), f"Node/{node}"),
                (f"deletionTimestamp {deleted} ({int(waited)} s ago)",),
                _heal(node),
            )
        )
    return findings


def attach_refused(snap: Snapshot, ctx: Context) -> list[Finding]:
    pods = {(ns(p), name(p)): p for p in snap.get("pods")}
    latest: dict[tuple[str, str], Any] = {}
    for event in snap.get("events"):
        if event.reason != "FailedAttachVolume" or not (event.message or "").startswith(
            ATTACH_REFUSALS
        ):
            continue
        involved = event.involvedObject
        key = (involved.namespace or "default", involved.name or "")
        pod = pods.get(key)
        if pod is None or (pod.status and pod.status.phase == "Running"):
            continue  # resolved since
        latest[key] = event
    return [
        Finding(
            "FP-N3",
            Severity.CRITICAL,
            f"{key[0]}/{key[1]} cannot attach its volume: it is still attached to another node",
            (f"Pod/{key[0]}/{key[1]}",),
            (f"event FailedAttachVolume: {event.message}",),
            "find the node that holds the volume (FP-N4) and heal it: fireproof heal node NODE",
        )
        for key, event in sorted(latest.items())
    ]


def stale_attachments(snap: Snapshot, ctx: Context) -> list[Finding]:
    dead = unhealthy_nodes(snap.get("nodes"))
    pv_of_claim = {
        (p.spec.claimRef.namespace, p.spec.claimRef.name): name(p)
        for p in snap.get("persistentvolumes")
        if p.spec and p.spec.claimRef
    }
    waiting: dict[str, list[Any]] = defaultdict(list)  # pv -> pods elsewhere that wait for it
    for pod in snap.get("pods"):
        node = pod.spec.nodeName if pod.spec else None
        if not node or node in dead or (pod.status and pod.status.phase == "Running"):
            continue
        for claim in claims(pod):
            pv = pv_of_claim.get((ns(pod), claim))
            if pv:
                waiting[pv].append(pod)
    findings = []
    for va in snap.get("volumeattachments"):
        node = va.spec.nodeName
        pv = va.spec.source.persistentVolumeName
        if node not in dead or not pv or not waiting.get(pv):
            continue
        if not (va.status and va.status.attached):
            continue
        pods = waiting[pv]
        findings.append(
            Finding(
                "FP-N4",
                Severity.CRITICAL,
                f"volume {pv} is still attached to {node} ({node_ready(dead[node])}) while "
                f"{ns(pods[0])}/{name(pods[0])} waits for it on {pods[0].spec.nodeName}",
                (f"VolumeAttachment/{name(va)}", f"Node/{node}", *(ref("Pod", p) for p in pods)),
                (f"VolumeAttachment {name(va)}: attached=true, node {node}",),
                _heal(node),
            )
        )
    return findings


def stuck_creating(snap: Snapshot, ctx: Context) -> list[Finding]:
    findings = []
    for pod in snap.get("pods"):
        if not claims(pod) or not pod.status or pod.status.phase != "Pending":
            continue
        if not pod.spec or not pod.spec.nodeName:
            continue  # not scheduled: a scheduling problem, not a volume one
        reason = waiting_reason(pod)
        if reason not in ("ContainerCreating", "PodInitializing") and not (reason or "").startswith(
            "Init"
        ):
            continue
        waited = age(pod.status.startTime or pod.metadata.creationTimestamp, ctx.now)
        if waited < ctx.stuck_after:
            continue
        findings.append(
            Finding(
                "FP-N5",
                Severity.WARNING,
                f"{ns(pod)}/{name(pod)} has waited {int(waited.total_seconds())} s in {reason} on "
                f"{pod.spec.nodeName} for its volume(s) {', '.join(claims(pod))}",
                (ref("Pod", pod),),
                (f"waiting reason {reason} for {int(waited.total_seconds())} s",),
                "see its events (`kubectl describe pod`); a volume held by a dead node needs "
                "fireproof heal node NODE",
            )
        )
    return findings


def leftover_out_of_service(snap: Snapshot, ctx: Context) -> list[Finding]:
    return [
        Finding(
            "FP-N6",
            Severity.WARNING,
            f"{name(n)} is Ready again but still carries the out-of-service taint: nothing "
            "can run on it",
            (f"Node/{name(n)}",),
            (f"taint {OUT_OF_SERVICE} present, Ready=True",),
            f"fireproof heal node {name(n)} --recover   (or kubectl taint node {name(n)} "
            f"{OUT_OF_SERVICE}-)",
        )
        for n in snap.get("nodes")
        if node_ready(n) == "True"
        and any(t.key == OUT_OF_SERVICE for t in ((n.spec.taints if n.spec else None) or []))
    ]


CHECKS = (
    Check(
        "FP-N1",
        "pods-running-on-dead-node",
        Severity.WARNING,
        "dead nodes and storage",
        ("nodes", "pods"),
        running_on_dead_nodes,
        "A NotReady/Unknown node whose pods are still reported Running: the API cannot tell "
        "whether they run. Until the node is fenced, RWO volumes stay attached to it.",
    ),
    Check(
        "FP-N2",
        "pods-stuck-terminating",
        Severity.CRITICAL,
        "dead nodes and storage",
        ("nodes", "pods"),
        stuck_terminating,
        "After the unreachable toleration, taint eviction deletes pods of a dead node, but "
        "only its kubelet can finish the deletion: they stay Terminating forever, and a "
        "StatefulSet will not recreate a pod whose name still exists.",
    ),
    Check(
        "FP-N3",
        "attach-refused",
        Severity.CRITICAL,
        "dead nodes and storage",
        ("events", "pods"),
        attach_refused,
        "The attach/detach controller refuses to attach a ReadWriteOnce volume that is still "
        "attached elsewhere: a FailedAttachVolume event whose message starts with "
        "`Multi-Attach error for volume` (up to Kubernetes 1.36) or `Waiting for detach for "
        "volume` (1.37+). The reason is generic; the message is what matters.",
    ),
    Check(
        "FP-N4",
        "stale-volume-attachment",
        Severity.CRITICAL,
        "dead nodes and storage",
        ("nodes", "pods", "volumeattachments", "persistentvolumes"),
        stale_attachments,
        "A VolumeAttachment still attached to a NotReady node while a pod on another node "
        "waits for that volume: Kubernetes force-detaches only after 6 minutes, or at once "
        "with the out-of-service taint, which is only safe on a node verified off.",
    ),
    Check(
        "FP-N5",
        "pods-stuck-creating",
        Severity.WARNING,
        "dead nodes and storage",
        ("pods",),
        stuck_creating,
        "A scheduled pod with PersistentVolumeClaims that stays ContainerCreating or Init "
        "for longer than a minute is usually waiting for a volume another node holds.",
    ),
    Check(
        "FP-N6",
        "out-of-service-left",
        Severity.WARNING,
        "dead nodes and storage",
        ("nodes",),
        leftover_out_of_service,
        "The out-of-service taint must be removed once the node is back; left on a Ready node "
        "it keeps every pod off it (and says the node is down when it is not).",
    ),
)
