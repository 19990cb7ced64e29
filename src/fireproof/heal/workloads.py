"""The workloads a dead node held, and whether they run elsewhere again."""

from __future__ import annotations

from dataclasses import dataclass

from fireproof.kube import Cluster, Pod, pod_running_ready


@dataclass(frozen=True, slots=True)
class AffectedPod:
    namespace: str
    name: str
    uid: str
    owner_kind: str | None
    owner_name: str | None
    claims: tuple[str, ...]
    """PersistentVolumeClaims it mounts (what keeps a replacement from starting)."""

    @property
    def label(self) -> str:
        owner = f" ({self.owner_kind}/{self.owner_name})" if self.owner_kind else ""
        return f"{self.namespace}/{self.name}{owner}"

    @property
    def comes_back(self) -> bool:
        """Whether a controller recreates it elsewhere (DaemonSet pods are node-bound)."""
        return self.owner_kind in ("ReplicaSet", "StatefulSet", "Job")


def affected_pods(pods: list[Pod]) -> list[AffectedPod]:
    out = []
    for pod in pods:
        meta, spec = pod.metadata, pod.spec
        if meta is None or spec is None or meta.name is None:
            continue
        owner = next((o for o in (meta.ownerReferences or []) if o.controller), None)
        claims = tuple(
            v.persistentVolumeClaim.claimName
            for v in (spec.volumes or [])
            if v.persistentVolumeClaim is not None
        )
        out.append(
            AffectedPod(
                namespace=meta.namespace or "default",
                name=meta.name,
                uid=meta.uid or "",
                owner_kind=owner.kind if owner else None,
                owner_name=owner.name if owner else None,
                claims=claims,
            )
        )
    return out


def waiting_for(cluster: Cluster, node: str, affected: list[AffectedPod]) -> list[AffectedPod]:
    """The affected pods that have no Running, Ready replacement on another node yet."""
    pods = cluster.pods()
    running_elsewhere: dict[tuple[str, str | None, str | None], list[str]] = {}
    by_name: dict[tuple[str, str], Pod] = {}
    for pod in pods:
        meta = pod.metadata
        if meta is None or pod.spec is None or not pod_running_ready(pod):
            continue
        if pod.spec.nodeName == node:
            continue
        owner = next((o for o in (meta.ownerReferences or []) if o.controller), None)
        key = (
            meta.namespace or "default",
            owner.kind if owner else None,
            owner.name if owner else None,
        )
        running_elsewhere.setdefault(key, []).append(meta.name or "")
        by_name[(meta.namespace or "default", meta.name or "")] = pod
    missing = []
    claimed: dict[tuple[str, str | None, str | None], int] = {}
    desired: dict[tuple[str, str | None, str | None], int | None] = {}
    for item in affected:
        if not item.comes_back:
            continue
        if item.owner_kind == "StatefulSet":
            # Same identity, new home: the pod of that name runs on another node.
            if (item.namespace, item.name) not in by_name:
                missing.append(item)
            continue
        key = (item.namespace, item.owner_kind, item.owner_name)
        running = len(running_elsewhere.get(key, []))
        if key not in desired and item.owner_kind == "ReplicaSet" and item.owner_name:
            desired[key] = cluster.replicaset_replicas(item.namespace, item.owner_name)
        # Every replica the owner wants must run off the dead node, not just "some".
        want = desired.get(key)
        used = claimed.get(key, 0)
        if (want is None and used < running) or (want is not None and running >= want):
            claimed[key] = used + 1
        else:
            missing.append(item)
    return missing
