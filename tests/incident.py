"""The TazLab incident on a lab: which pods carry the volumes, and how stuck they are.

Shared by the incident tests on the default (v1.37) lab and on a v1.36 lab, and by the heal
tests that start from the same stuck state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labtools import LabHandle, has_taint, node_ready, wait_for

TRAEFIK = ("traefik", "app.kubernetes.io/name=traefik")
POSTGRES = ("blog", "app=postgres")
UNREACHABLE = "node.kubernetes.io/unreachable"
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
# kubernetes#138836 (v1.37) renamed the attach/detach controller's refusal; the reason stays.
ATTACH_REFUSAL = {36: "Multi-Attach error for volume", 37: "Waiting for detach for volume"}


def server_minor(lab: LabHandle) -> int:
    version = lab.kubectl_json("version")["serverVersion"]
    return int(str(version["minor"]).rstrip("+"))


def attach_refusal(lab: LabHandle) -> str:
    minor = server_minor(lab)
    return ATTACH_REFUSAL[min(max(minor, 36), 37)]


def pods(lab: LabHandle, workload: tuple[str, str]) -> list[dict[str, Any]]:
    namespace, selector = workload
    items: list[dict[str, Any]] = lab.kubectl_json("get", "pods", "-n", namespace, "-l", selector)[
        "items"
    ]
    return items


def running_pod(lab: LabHandle, workload: tuple[str, str]) -> dict[str, Any]:
    def one() -> dict[str, Any] | None:
        alive = [
            p
            for p in pods(lab, workload)
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        return alive[0] if len(alive) == 1 else None

    return wait_for(f"{workload[0]} Running", one, timeout=60)


def attachments(lab: LabHandle, pv: str) -> list[dict[str, Any]]:
    return [
        va
        for va in lab.kubectl_json("get", "volumeattachments")["items"]
        if va["spec"]["source"].get("persistentVolumeName") == pv
    ]


def volume_of(lab: LabHandle, namespace: str, claim: str) -> str:
    pvc = lab.kubectl_json("get", "pvc", "-n", namespace, claim)
    return str(pvc["spec"]["volumeName"])


@dataclass
class Stuck:
    """Where things stand once the real controllers have given up on a dead node."""

    node: str
    old_uid: str
    volume: str


def wait_dead_and_tainted(lab: LabHandle, node: str) -> None:
    wait_for(
        f"{node} Unknown with {UNREACHABLE}:NoExecute",
        lambda: (
            node_ready(n := lab.kubectl_json("get", "node", node)) == "Unknown"
            and has_taint(n, UNREACHABLE, "NoExecute")
        ),
        timeout=40,
    )


def wait_terminating(lab: LabHandle, workload: tuple[str, str], uid: str) -> None:
    wait_for(
        f"{workload[0]} pod {uid} Terminating",
        lambda: any(
            p["metadata"]["uid"] == uid and p["metadata"].get("deletionTimestamp")
            for p in pods(lab, workload)
        ),
        timeout=60,
    )


def refusal_events(lab: LabHandle, namespace: str, pod_name: str) -> list[dict[str, Any]]:
    events = lab.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={pod_name}"
    )["items"]
    return [e for e in events if e["reason"] == "FailedAttachVolume"]


def power_on_and_clean(lab: LabHandle, *nodes: str) -> None:
    for node in nodes:
        lab.cli("lab", "power-on", node)
        lab.kubectl("taint", "node", node, f"{OUT_OF_SERVICE}-")
    for node in nodes:
        wait_for(
            f"{node} Ready",
            lambda node=node: node_ready(lab.kubectl_json("get", "node", node)) == "True",
            timeout=60,
        )
