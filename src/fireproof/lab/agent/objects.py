"""Pure builders for the API objects a kubelet writes: Node, Lease, pod status, events.

Kept free of I/O so their shape can be unit-tested against what a real kubelet posts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from fireproof.lab.topology import NodeSpec, Role

ATTACH_DETACH_ANNOTATION = "volumes.kubernetes.io/controller-managed-attach-detach"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
Json = dict[str, Any]

_CAPACITY = {"cpu": "4", "memory": "8129368Ki", "pods": "110", "ephemeral-storage": "61202244Ki"}
_ALLOCATABLE = {
    "cpu": "4",
    "memory": "8026968Ki",
    "pods": "110",
    "ephemeral-storage": "56403987563",
}
MAX_IMAGES = 50
"""The kubelet's --node-status-max-images default: the biggest images, largest first."""
_IMAGE_REPOSITORIES = (
    "ghcr.io/siderolabs/kubelet",
    "ghcr.io/siderolabs/installer",
    "registry.k8s.io/kube-apiserver",
    "registry.k8s.io/kube-controller-manager",
    "registry.k8s.io/kube-scheduler",
    "registry.k8s.io/kube-proxy",
    "registry.k8s.io/coredns/coredns",
    "registry.k8s.io/pause",
    "docker.io/longhornio/longhorn-manager",
    "docker.io/longhornio/longhorn-engine",
    "docker.io/longhornio/longhorn-instance-manager",
    "docker.io/longhornio/longhorn-ui",
    "docker.io/longhornio/csi-attacher",
    "docker.io/longhornio/csi-provisioner",
    "docker.io/longhornio/csi-resizer",
    "docker.io/longhornio/csi-snapshotter",
    "docker.io/longhornio/csi-node-driver-registrar",
    "docker.io/longhornio/livenessprobe",
    "docker.io/traefik",
    "docker.io/library/postgres",
    "quay.io/prometheus/node-exporter",
    "quay.io/prometheus/prometheus",
    "docker.io/grafana/grafana",
    "quay.io/jetstack/cert-manager-controller",
    "quay.io/cilium/cilium",
)


def _images() -> list[Json]:
    """A kubelet's image list: each image by digest and by tag, sizes from tens to hundreds of
    MB. A real Node object is tens of KB, most of it this list; the lab's must weigh as much,
    or what is measured on it (guard's and doctor's API cost) flatters them."""
    images = []
    for index in range(MAX_IMAGES):
        repository = _IMAGE_REPOSITORIES[index % len(_IMAGE_REPOSITORIES)]
        tag = f"v1.{30 + index // len(_IMAGE_REPOSITORIES)}.{index % 7}"
        digest = hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
        size = 900_000_000 - index * 15_000_000 - int(digest[:4], 16)
        images.append({"names": [f"{repository}@sha256:{digest}", f"{repository}:{tag}"],
                       "sizeBytes": size})  # fmt: skip
    return images


_OS_IMAGE = "Talos (v1.11.5)"
_KERNEL = "6.12.57-talos"
_RUNTIME = "containerd://2.1.5"


def timestamp(at: dt.datetime | None = None) -> str:
    return (at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp(at: dt.datetime | None = None) -> str:
    return (at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_manifest(spec: NodeSpec, index: int) -> Json:
    """The Node a kubelet registers: labels, the attach/detach annotation, control-plane taint."""
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        # The Proxmox host is the failure domain that matters in a home lab.
        "topology.kubernetes.io/zone": spec.hypervisor_host,
    }
    taints: list[Json] = []
    if spec.role is Role.CONTROL_PLANE:
        labels[CONTROL_PLANE_LABEL] = ""
        taints.append({"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {
                ATTACH_DETACH_ANNOTATION: "true",
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": {"podCIDR": f"10.244.{index % 256}.0/24", "taints": taints},
    }


def _condition(kind: str, status: str, reason: str, message: str, now: str, since: str) -> Json:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": since,
    }


def node_status(
    spec: NodeSpec,
    *,
    version: str,
    boot_id: str,
    ready_since: str,
    address: str | None = None,
    volumes_in_use: list[str] | None = None,
) -> Json:
    """``status`` of a healthy node as a kubelet reports it.

    ``volumesAttached`` is left out on purpose: the attach/detach controller owns it.
    """
    now = timestamp()
    ident = hashlib.sha256(spec.name.encode()).hexdigest()
    status: Json = {
        "capacity": _CAPACITY,
        "allocatable": _ALLOCATABLE,
        "conditions": [
            _condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                now,
                ready_since,
            ),
            _condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                now,
                ready_since,
            ),
            _condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                now,
                ready_since,
            ),
            _condition(
                "Ready", "True", "KubeletReady", "kubelet is posting ready status", now, ready_since
            ),
        ],
        "addresses": [
            {"type": "InternalIP", "address": address or spec.address},
            {"type": "Hostname", "address": spec.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": ident[:32],
            "systemUUID": spec.system_uuid,
            "bootID": boot_id,
            "kernelVersion": _KERNEL,
            "osImage": _OS_IMAGE,
            "containerRuntimeVersion": _RUNTIME,
            "kubeletVersion": version,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "volumesInUse": volumes_in_use or [],
        "images": _images(),
    }
    return status


def lease_manifest(node_name: str, node_uid: str, duration: int) -> Json:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node_name,
            "namespace": "kube-node-lease",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": node_name,
            "leaseDurationSeconds": duration,
            "renewTime": micro_timestamp(),
        },
    }


def _image_id(image: str) -> str:
    repo = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _container_id(pod_uid: str, name: str, restarts: int) -> str:
    return "containerd://" + hashlib.sha256(f"{pod_uid}/{name}/{restarts}".encode()).hexdigest()


def running_pod_status(
    *,
    pod_uid: str,
    containers: list[tuple[str, str]],
    init_containers: list[tuple[str, str]],
    host_ip: str,
    pod_ip: str,
    restart_count: int,
    started_at: str,
    not_ready: frozenset[str] = frozenset(),
) -> Json:
    """Status patch for a pod whose containers all run: phase Running, every condition True
    (but Ready and ContainersReady while a container in ``not_ready`` waits for its probe)."""
    now = timestamp()
    conditions = [
        {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
        for kind in ("PodReadyToStartContainers", "Initialized")
    ] + _ready_conditions(not not_ready, now)
    statuses = [
        {
            "name": name,
            "image": image,
            "imageID": _image_id(image),
            "containerID": _container_id(pod_uid, name, restart_count),
            "ready": name not in not_ready,
            "started": True,
            "restartCount": restart_count,
            "state": {"running": {"startedAt": started_at}},
        }
        for name, image in containers
    ]
    init_statuses = [
        {
            "name": name,
            "image": image,
            "imageID": _image_id(image),
            "containerID": _container_id(pod_uid, name, restart_count),
            "ready": True,
            "started": False,
            "restartCount": 0,
            "state": {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": started_at,
                    "finishedAt": started_at,
                }
            },
        }
        for name, image in init_containers
    ]
    status: Json = {
        "phase": "Running",
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started_at,
        "conditions": conditions,
        "containerStatuses": statuses,
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return {"status": status}


def _ready_conditions(ready: bool, now: str) -> list[Json]:
    return [
        {"type": kind, "status": str(ready), "lastProbeTime": None, "lastTransitionTime": now}
        for kind in ("ContainersReady", "Ready")
    ]


def readiness_patch(container_statuses: list[Json], not_ready: frozenset[str]) -> Json:
    """Status patch after a readiness probe changed its mind: the same containers, with their
    ``ready`` flags (the list is replaced whole: it has no merge key), and the pod's conditions."""
    statuses = [{**s, "ready": s.get("name") not in not_ready} for s in container_statuses]
    conditions = _ready_conditions(not not_ready, timestamp())
    return {"status": {"conditions": conditions, "containerStatuses": statuses}}


def event_manifest(
    *,
    involved: Json,
    reason: str,
    message: str,
    event_type: str = "Normal",
    component: str = "kubelet",
    host: str | None = None,
) -> Json:
    """A core/v1 Event as kubelets write them (``reportingComponent`` kubelet, ``source.host``)."""
    now = timestamp()
    ns = involved.get("namespace") or "default"
    name = f"{involved['name']}.{hashlib.sha1(f'{now}{reason}{message}'.encode(), usedforsecurity=False).hexdigest()[:16]}"  # noqa: E501
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": event_type,
        "source": {"component": component, **({"host": host} if host else {})},
        "reportingComponent": component,
        "reportingInstance": host or "",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def crashed_pod_status(
    *,
    containers: list[tuple[str, str]],
    restart_count: int,
    backoff_seconds: float,
    pod_name: str,
    message: str,
    finished_at: str,
) -> Json:
    """Status patch of a pod whose containers exit at once: CrashLoopBackOff, not Ready."""
    now = timestamp()
    statuses = [
        {
            "name": name,
            "image": image,
            "imageID": _image_id(image),
            "containerID": "",
            "ready": False,
            "started": False,
            "restartCount": restart_count,
            "state": {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {int(backoff_seconds)}s restarting failed "
                    f"container={name} pod={pod_name}",
                }
            },
            "lastState": {
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "message": message,
                    "startedAt": finished_at,
                    "finishedAt": finished_at,
                }
            },
        }
        for name, image in containers
    ]
    conditions = [
        {
            "type": kind,
            "status": "False",
            "reason": "ContainersNotReady",
            "message": f"containers with unready status: [{' '.join(n for n, _ in containers)}]",
            "lastProbeTime": None,
            "lastTransitionTime": now,
        }
        for kind in ("ContainersReady", "Ready")
    ]
    return {"status": {"phase": "Running", "conditions": conditions, "containerStatuses": statuses}}


def creating_pod_status(*, containers: list[tuple[str, str]], host_ip: str, since: str) -> Json:
    """Status patch of a pod whose kubelet waits for its volumes: Pending, ContainerCreating."""
    statuses = [
        {
            "name": name,
            "image": image,
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}},
        }
        for name, image in containers
    ]
    conditions = [
        {
            "type": kind,
            "status": "False",
            "lastProbeTime": None,
            "lastTransitionTime": since,
            **({"reason": "ContainersNotReady"} if kind != "PodReadyToStartContainers" else {}),
        }
        for kind in ("PodReadyToStartContainers", "ContainersReady", "Ready")
    ]
    return {
        "status": {
            "phase": "Pending",
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": since,
            "conditions": conditions,
            "containerStatuses": statuses,
        }
    }
