"""Command lines of the upstream control-plane components, for a loopback-only lab."""

from __future__ import annotations

from dataclasses import dataclass

from fireproof.lab.addresses import SERVICE_CIDR
from fireproof.lab.binaries import BinarySet
from fireproof.lab.profiles import TimingProfile
from fireproof.lab.state import LabPaths


def _duration(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms"


@dataclass(frozen=True, slots=True)
class Ports:
    apiserver: int
    etcd_client: int
    etcd_peer: int
    controller_manager: int
    scheduler: int
    agent: int
    proxmox: int

    def as_dict(self) -> dict[str, int]:
        return {
            "apiserver": self.apiserver,
            "etcd_client": self.etcd_client,
            "etcd_peer": self.etcd_peer,
            "controller_manager": self.controller_manager,
            "scheduler": self.scheduler,
            "agent": self.agent,
            "proxmox": self.proxmox,
        }


def etcd_argv(bins: BinarySet, paths: LabPaths, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(bins.path("etcd")),
        "--name=lab",
        f"--data-dir={paths.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=lab={peer}",
        "--log-level=warn",
        # The lab's data is thrown away at every start; fsync would only cost test time.
        "--unsafe-no-fsync",
    ]


def apiserver_argv(
    bins: BinarySet, paths: LabPaths, ports: Ports, profile: TimingProfile
) -> list[str]:
    pki = paths.pki
    return [
        str(bins.path("kube-apiserver")),
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        # The lab owns the `kubernetes` Endpoints, so it can leave them stale like in the incident.
        "--endpoint-reconciler-type=none",
        f"--default-not-ready-toleration-seconds={profile.toleration_seconds}",
        f"--default-unreachable-toleration-seconds={profile.toleration_seconds}",
        "--profiling=false",
        # Evidence independent of any remediator's own records (the fault campaign reads it).
        f"--audit-policy-file={paths.audit_policy}",
        f"--audit-log-path={paths.audit_log}",
        "--audit-log-format=json",
        "--audit-log-maxbackup=0",
        "--v=1",
    ]


AUDIT_POLICY = """\
# The lab's audit policy: only the writes that release a node's volumes or change its taints.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Request
    verbs: [patch, update]
    resources: [{group: "", resources: [nodes]}]
  - level: RequestResponse
    verbs: [delete, deletecollection]
    resources:
      - {group: "", resources: [pods, nodes]}
      - {group: storage.k8s.io, resources: [volumeattachments]}
  - level: Metadata
    verbs: [create]
    resources: [{group: "", resources: [pods/eviction]}]
  - level: None
"""


def _component_common(paths: LabPaths, component: str, port: int) -> list[str]:
    kubeconfig = paths.component_kubeconfig(component)
    pki = paths.pki
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        # One instance of each: leader election would only delay the start.
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(
    bins: BinarySet, paths: LabPaths, ports: Ports, profile: TimingProfile
) -> list[str]:
    pki = paths.pki
    return [
        str(bins.path("kube-controller-manager")),
        *_component_common(paths, "controller-manager", ports.controller_manager),
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca.cert}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        "--use-service-account-credentials=true",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--node-monitor-period={_duration(profile.node_monitor_period_seconds)}",
        f"--node-monitor-grace-period={_duration(profile.node_monitor_grace_period_seconds)}",
        f"--node-startup-grace-period={_duration(profile.node_startup_grace_period_seconds)}",
    ]


def scheduler_argv(bins: BinarySet, paths: LabPaths, ports: Ports) -> list[str]:
    return [
        str(bins.path("kube-scheduler")),
        *_component_common(paths, "scheduler", ports.scheduler),
    ]
