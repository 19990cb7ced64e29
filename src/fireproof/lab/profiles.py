"""Timing profiles: how fast heartbeats, failure detection and evictions run in the lab."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimingProfile:
    """One consistent set of kubelet and control-plane timings."""

    name: str
    description: str
    lease_renew_seconds: float
    """How often each simulated kubelet renews its Lease (kubelet: every 10 s)."""
    lease_duration_seconds: int
    """``spec.leaseDurationSeconds`` written into node Leases (kubelet: 40 s)."""
    status_check_seconds: float
    """How often a kubelet compares its Node status with the API (nodeStatusUpdateFrequency)."""
    status_report_seconds: float
    """A kubelet re-posts unchanged status at least this often (nodeStatusReportFrequency)."""
    node_monitor_period_seconds: float
    """kube-controller-manager ``--node-monitor-period``."""
    node_monitor_grace_period_seconds: float
    """kube-controller-manager ``--node-monitor-grace-period``: silence before Ready=Unknown."""
    node_startup_grace_period_seconds: float
    """kube-controller-manager ``--node-startup-grace-period``."""
    toleration_seconds: int
    """kube-apiserver default not-ready / unreachable toleration added to every pod."""
    pod_start_seconds: float
    """Simulated time to pull and start a pod's containers."""
    pod_stop_seconds: float
    """Simulated time to stop a pod's containers after deletion was requested."""
    vm_task_seconds: float
    """How long a Proxmox stop/start task runs."""
    ha_stop_delay_seconds: float
    """How long an HA-managed VM keeps running after its (already finished) stop task."""
    dead_host_status_seconds: float
    """How long a dead Proxmox host's VMs keep their last status in the cluster lists."""
    ha_round_seconds: float
    """How often Proxmox HA's manager runs a round (pve-ha-crm: 10 s)."""
    ha_fence_delay_seconds: float
    """How long a node is offline before HA fences its services (NodeStatus.pm: 60 s)."""
    ha_agent_lock_seconds: float
    """How long a dead node's HA agent lock outlives its last renewal (pmxcfs: 120 s)."""
    attach_seconds: float
    """Simulated CSI attach / detach latency."""
    crash_backoff_seconds: float
    """First CrashLoopBackOff delay (doubles up to 30x), kubelet: 10 s."""
    mount_timeout_seconds: float
    """How long a kubelet waits for a volume before a FailedMount event (kubelet: 2 min)."""


FAST = TimingProfile(
    name="fast",
    description="seconds-scale timings for tests and demos",
    lease_renew_seconds=1.0,
    lease_duration_seconds=10,
    status_check_seconds=2.0,
    status_report_seconds=10.0,
    node_monitor_period_seconds=1.0,
    node_monitor_grace_period_seconds=5.0,
    node_startup_grace_period_seconds=10.0,
    toleration_seconds=10,
    pod_start_seconds=0.3,
    pod_stop_seconds=0.2,
    vm_task_seconds=0.3,
    ha_stop_delay_seconds=2.0,
    dead_host_status_seconds=8.0,
    # HA at a tenth of upstream's timings: its order of events, not its minutes.
    ha_round_seconds=1.0,
    ha_fence_delay_seconds=6.0,
    ha_agent_lock_seconds=12.0,
    attach_seconds=0.3,
    crash_backoff_seconds=1.0,
    mount_timeout_seconds=10.0,
)

REAL = TimingProfile(
    name="real",
    description="upstream Kubernetes defaults (v1.32+), as on a production cluster",
    lease_renew_seconds=10.0,
    lease_duration_seconds=40,
    status_check_seconds=10.0,
    status_report_seconds=300.0,
    node_monitor_period_seconds=5.0,
    node_monitor_grace_period_seconds=50.0,
    node_startup_grace_period_seconds=60.0,
    toleration_seconds=300,
    pod_start_seconds=2.0,
    pod_stop_seconds=1.0,
    vm_task_seconds=2.0,
    ha_stop_delay_seconds=10.0,
    dead_host_status_seconds=300.0,
    ha_round_seconds=10.0,
    ha_fence_delay_seconds=60.0,
    ha_agent_lock_seconds=120.0,
    attach_seconds=2.0,
    crash_backoff_seconds=10.0,
    mount_timeout_seconds=120.0,
)

PROFILES: dict[str, TimingProfile] = {p.name: p for p in (FAST, REAL)}
