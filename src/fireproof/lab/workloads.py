"""What runs on the lab's cluster: the storage driver and TazLab's workloads.

Images are names only: the simulated kubelets never pull anything.
"""

from __future__ import annotations

from pathlib import Path

import lightkube
import yaml
from lightkube import codecs
from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet

from fireproof.kube import KubeApiError, KubeUnreachableError, translate_errors
from fireproof.lab.addresses import KUBERNETES_SERVICE_IP

NEEDS_API = "lab.fireproof.dev/needs-api"

STORAGE = """
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: driver.longhorn.io}
spec: {attachRequired: true, podInfoOnMount: true, fsGroupPolicy: ReadWriteOnceWithFSType}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: longhorn
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: driver.longhorn.io
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: true
parameters: {numberOfReplicas: "3", staleReplicaTimeout: "30"}
"""

SYSTEM = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: longhorn-system}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: coredns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{k8s-app: kube-dns}}}}
  template:
    metadata:
      labels: {{k8s-app: kube-dns}}
      annotations: {{{NEEDS_API}: "true"}}
    spec:
      priorityClassName: system-cluster-critical
      tolerations: [{{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}}]
      # As kubeadm and Talos deploy it: replicas prefer distinct nodes.
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              labelSelector: {{matchLabels: {{k8s-app: kube-dns}}}}
              topologyKey: kubernetes.io/hostname
      containers:
      - name: coredns
        image: registry.k8s.io/coredns/coredns:v1.12.1
        args: ["-conf", "/etc/coredns/Corefile"]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: coredns, namespace: kube-system}}
spec: {{maxUnavailable: 1, selector: {{matchLabels: {{k8s-app: kube-dns}}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: kube-dns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  clusterIP: 10.96.0.10
  selector: {{k8s-app: kube-dns}}
  ports: [{{name: dns, port: 53, protocol: UDP}}, {{name: dns-tcp, port: 53, protocol: TCP}}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: kube-proxy, namespace: kube-system, labels: {{k8s-app: kube-proxy}}}}
spec:
  selector: {{matchLabels: {{k8s-app: kube-proxy}}}}
  template:
    metadata: {{labels: {{k8s-app: kube-proxy}}}}
    spec:
      hostNetwork: true
      priorityClassName: system-node-critical
      tolerations: [{{operator: Exists}}]
      containers: [{{name: kube-proxy, image: "registry.k8s.io/kube-proxy:v1.37.2"}}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: longhorn-manager, namespace: longhorn-system, labels: {{app: longhorn-manager}}}}
spec:
  selector: {{matchLabels: {{app: longhorn-manager}}}}
  template:
    metadata:
      labels: {{app: longhorn-manager}}
      annotations: {{{NEEDS_API}: "true"}}
    spec:
      containers:
      - name: longhorn-manager
        image: longhornio/longhorn-manager:v1.9.1
        env: [{{name: KUBERNETES_SERVICE_HOST, value: "{KUBERNETES_SERVICE_IP}"}}]
"""

# Traefik keeps ACME certificates in acme.json on a ReadWriteOnce volume: one replica only.
TRAEFIK = """
apiVersion: v1
kind: Namespace
metadata: {name: traefik}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: traefik, namespace: traefik}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: longhorn
  resources: {requests: {storage: 128Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: traefik, namespace: traefik, labels: {app.kubernetes.io/name: traefik}}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: traefik}}
  template:
    metadata: {labels: {app.kubernetes.io/name: traefik}}
    spec:
      containers:
      - name: traefik
        image: docker.io/traefik:v3.4
        args: ["--certificatesresolvers.le.acme.storage=/data/acme.json"]
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: traefik}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: traefik, namespace: traefik}
spec: {maxUnavailable: 1, selector: {matchLabels: {app.kubernetes.io/name: traefik}}}
"""

STATEFULSET = """
apiVersion: v1
kind: Namespace
metadata: {name: blog}
---
apiVersion: v1
kind: Service
metadata: {name: postgres, namespace: blog}
spec: {clusterIP: None, selector: {app: postgres}, ports: [{port: 5432}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres, namespace: blog}
spec:
  serviceName: postgres
  replicas: 1
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      containers:
      - name: postgres
        image: docker.io/postgres:17
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: longhorn
      resources: {requests: {storage: 1Gi}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: postgres, namespace: blog}
spec: {maxUnavailable: 1, selector: {matchLabels: {app: postgres}}}
"""

MANIFESTS: dict[str, tuple[str, ...]] = {
    "minimal": (STORAGE, SYSTEM, TRAEFIK, STATEFULSET),
    "tazlab": (STORAGE, SYSTEM, TRAEFIK, STATEFULSET),
}

WORKLOADS = (
    ("Deployment", "kube-system", "coredns"),
    ("DaemonSet", "kube-system", "kube-proxy"),
    ("DaemonSet", "longhorn-system", "longhorn-manager"),
    ("Deployment", "traefik", "traefik"),
    ("StatefulSet", "blog", "postgres"),
)
"""Workloads `lab up` waits for (when the lab has workers)."""


def install_crds(client: lightkube.Client, files: list[Path]) -> None:
    """Server-side apply upstream CustomResourceDefinitions (cert-manager's, Traefik's), so that
    the API server validates their objects as a real cluster with them installed does."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 10x faster on 3 MB
    for path in files:
        for document in yaml.load_all(path.read_text(), Loader=loader):
            if document:
                with translate_errors():
                    client.apply(
                        codecs.from_dict(document), field_manager="fireproof-lab", force=True
                    )


def apply_workloads(client: lightkube.Client, topology: str) -> None:
    """Server-side apply every manifest of the topology (idempotent)."""
    for manifest in MANIFESTS[topology]:
        for obj in codecs.load_all_yaml(manifest):
            with translate_errors():
                client.apply(obj, field_manager="fireproof-lab", force=True)


def workloads_ready(client: lightkube.Client) -> bool:
    """Every workload of ``WORKLOADS`` has all its replicas ready."""
    try:
        with translate_errors():
            for kind, namespace, name in WORKLOADS:
                if not _ready(client, kind, namespace, name):
                    return False
    except (KubeApiError, KubeUnreachableError):
        return False
    return True


def _ready(client: lightkube.Client, kind: str, namespace: str, name: str) -> bool:
    if kind == "DaemonSet":
        ds = client.get(DaemonSet, name, namespace=namespace)
        desired = ds.status.desiredNumberScheduled if ds.status else 0
        return bool(desired) and ds.status is not None and (ds.status.numberReady or 0) >= desired
    workload = client.get(_KINDS[kind], name, namespace=namespace)
    want = (workload.spec.replicas if workload.spec else None) or 0
    ready = (workload.status.readyReplicas if workload.status else None) or 0
    return ready >= want


_KINDS: dict[str, type[Deployment] | type[StatefulSet]] = {
    "Deployment": Deployment,
    "StatefulSet": StatefulSet,
}
