"""Small readings of Kubernetes objects shared by the checks (no API calls here)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fireproof.kube import internal_ip, is_control_plane, node_ready

__all__ = ["internal_ip", "is_control_plane", "node_ready"]


def name(obj: Any) -> str:
    return str(obj.metadata.name) if obj.metadata and obj.metadata.name else "?"


def ns(obj: Any) -> str:
    return str(obj.metadata.namespace or "default") if obj.metadata else "default"


def ref(kind: str, obj: Any) -> str:
    namespace = obj.metadata.namespace if obj.metadata else None
    return f"{kind}/{namespace}/{name(obj)}" if namespace else f"{kind}/{name(obj)}"


def age(stamp: Any, now: dt.datetime) -> dt.timedelta:
    if stamp is None:
        return dt.timedelta(0)
    if isinstance(stamp, str):
        stamp = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    elapsed: dt.timedelta = now - stamp
    return elapsed


def unhealthy_nodes(nodes: list[Any]) -> dict[str, Any]:
    return {name(n): n for n in nodes if node_ready(n) != "True"}


def claims(pod: Any) -> list[str]:
    volumes = (pod.spec.volumes if pod.spec else None) or []
    return [v.persistentVolumeClaim.claimName for v in volumes if v.persistentVolumeClaim]


def template_claims(template: Any) -> list[str]:
    volumes = (template.spec.volumes if template and template.spec else None) or []
    return [v.persistentVolumeClaim.claimName for v in volumes if v.persistentVolumeClaim]


def rwo_claims(pvcs: list[Any]) -> set[tuple[str, str]]:
    """(namespace, name) of claims that only one node may mount."""
    out = set()
    for pvc in pvcs:
        modes = (pvc.spec.accessModes if pvc.spec else None) or []
        if "ReadWriteOnce" in modes or "ReadWriteOncePod" in modes:
            out.add((ns(pvc), name(pvc)))
    return out


def waiting_reason(pod: Any) -> str | None:
    statuses = [
        *((pod.status.initContainerStatuses if pod.status else None) or []),
        *((pod.status.containerStatuses if pod.status else None) or []),
    ]
    for status in statuses:
        if status.state and status.state.waiting:
            return str(status.state.waiting.reason)
    return None


def has_spread(template: Any) -> bool:
    spec = template.spec if template else None
    if spec is None:
        return False
    if spec.topologySpreadConstraints:
        return True
    anti = spec.affinity.podAntiAffinity if spec.affinity else None
    return bool(
        anti
        and (
            anti.requiredDuringSchedulingIgnoredDuringExecution
            or anti.preferredDuringSchedulingIgnoredDuringExecution
        )
    )


def required_hostname_anti_affinity(template: Any) -> bool:
    spec = template.spec if template else None
    anti = spec.affinity.podAntiAffinity if spec and spec.affinity else None
    terms = (anti.requiredDuringSchedulingIgnoredDuringExecution if anti else None) or []
    return any(t.topologyKey == "kubernetes.io/hostname" for t in terms)


def tolerates_control_plane(template: Any) -> bool:
    spec = template.spec if template else None
    return any(
        (t.key or "").startswith("node-role.kubernetes.io/control-plane") or t.operator == "Exists"
        for t in ((spec.tolerations if spec else None) or [])
    )


INGRESS_HINTS = ("traefik", "ingress-nginx", "nginx-ingress", "haproxy-ingress", "contour")


def is_ingress_controller(obj: Any) -> bool:
    labels = (obj.metadata.labels if obj.metadata else None) or {}
    text = " ".join([name(obj), *labels.values()]).lower()
    return any(hint in text for hint in INGRESS_HINTS)
