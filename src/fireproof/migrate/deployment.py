"""Traefik's Deployment made stateless and highly available: pure transformations of manifests.

Without its ACME resolvers Traefik keeps nothing on disk, so its claim comes out of the pod
template, and it runs several replicas: a rolling update that never drops below the wanted
count, a PodDisruptionBudget, and a spread over Proxmox hosts (``topology.kubernetes.io/zone``,
the label the Proxmox cloud-controller-manager sets and guard keeps) and over nodes.
"""

from __future__ import annotations

import copy
from typing import Any

from fireproof.migrate.traefikargs import PREFIX

ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"
_SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation")
_SERVER_ANNOTATIONS = (
    "deployment.kubernetes.io/revision",
    "kubectl.kubernetes.io/last-applied-configuration",
)


def resolver_args(container: dict[str, Any]) -> list[str]:
    return [a for a in container.get("args") or [] if a.lower().startswith(PREFIX)]


def claims_at(deployment: dict[str, Any], paths: list[str]) -> list[str]:
    """The claims whose volume is mounted at (or above) one of ``paths``, by any container."""
    spec = deployment["spec"]["template"]["spec"]
    claim_of = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec.get("volumes") or []
        if v.get("persistentVolumeClaim")
    }
    found: list[str] = []
    for container in spec.get("containers") or []:
        for mount in container.get("volumeMounts") or []:
            root = mount["mountPath"].rstrip("/") + "/"
            if mount["name"] in claim_of and any(p.startswith(root) for p in paths):
                found.append(claim_of[mount["name"]])
    return list(dict.fromkeys(found))


def stateless(deployment: dict[str, Any], claims: list[str], replicas: int) -> dict[str, Any]:
    """The Deployment without its resolvers and ``claims``, at ``replicas``, rolling and spread:
    a whole object to replace the current one with (conditional on its resourceVersion)."""
    after = copy.deepcopy(deployment)
    after.pop("status", None)
    metadata = after["metadata"]
    for key in _SERVER_FIELDS:
        if key != "resourceVersion":  # kept: the replace is conditional on it
            metadata.pop(key, None)
    for key in _SERVER_ANNOTATIONS:
        (metadata.get("annotations") or {}).pop(key, None)
    spec = after["spec"]
    template = spec["template"]["spec"]
    dropped = {
        v["name"]
        for v in template.get("volumes") or []
        if (v.get("persistentVolumeClaim") or {}).get("claimName") in claims
    }
    template["volumes"] = [v for v in template.get("volumes") or [] if v["name"] not in dropped]
    for container in template.get("containers") or []:
        container["args"] = [
            a for a in container.get("args") or [] if a not in resolver_args(container)
        ]
        container["volumeMounts"] = [
            m for m in container.get("volumeMounts") or [] if m["name"] not in dropped
        ]
    spec["replicas"] = replicas
    spec["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    template["topologySpreadConstraints"] = spread(spec["selector"]["matchLabels"])
    return after


def spread(labels: dict[str, str]) -> list[dict[str, Any]]:
    """Over Proxmox hosts (a host takes its VMs down together) and over nodes.

    The zone spread schedules anyway: with a host down, its replicas must still find a place.
    The node spread is strict, over the nodes that can take a pod: ``nodeTaintsPolicy: Honor``
    leaves out tainted nodes (control planes, a dead node's ``unreachable`` or
    ``out-of-service``), which would otherwise count as empty domains and forbid a second
    replica on any node once few are left."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": ZONE,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": dict(labels)},
        },
        {
            "maxSkew": 1,
            "topologyKey": HOSTNAME,
            "whenUnsatisfiable": "DoNotSchedule",
            "nodeTaintsPolicy": "Honor",
            "labelSelector": {"matchLabels": dict(labels)},
        },
    ]


def disruption_budget(deployment: dict[str, Any], replicas: int) -> dict[str, Any]:
    """At most one replica down by choice (a drain, an upgrade), never all."""
    meta = deployment["metadata"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {
            "minAvailable": max(1, replicas - 1),
            "selector": {"matchLabels": dict(deployment["spec"]["selector"]["matchLabels"])},
        },
    }


def helm_release(deployment: dict[str, Any]) -> str | None:
    """The Helm release that owns the Deployment: it gets values, never patches (the next
    `helm upgrade` would undo a patch)."""
    meta = deployment["metadata"]
    if (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") != "Helm":
        return None
    return str((meta.get("annotations") or {}).get("meta.helm.sh/release-name") or "traefik")


def helm_values(deployment: dict[str, Any], replicas: int) -> dict[str, Any]:
    """The Traefik chart's values (traefik/traefik-helm-chart) for the same result."""
    labels = deployment["spec"]["selector"]["matchLabels"]
    return {
        "deployment": {"replicas": replicas},
        "persistence": {"enabled": False},
        "certificatesResolvers": {},
        "updateStrategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "podDisruptionBudget": {"enabled": True, "minAvailable": max(1, replicas - 1)},
        "topologySpreadConstraints": spread(labels),
    }
