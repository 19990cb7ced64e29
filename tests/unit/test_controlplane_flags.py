"""The flags handed to the upstream components carry the profile's timings."""

from __future__ import annotations

from pathlib import Path

from fireproof.lab.binaries import BinarySet
from fireproof.lab.controlplane import Ports, apiserver_argv, controller_manager_argv, etcd_argv
from fireproof.lab.profiles import FAST, REAL
from fireproof.lab.state import LabPaths

PORTS = Ports(6443, 2379, 2380, 10257, 10259, 9000, 8006)
BINS = BinarySet(Path("/bins"), "v1.37.2")
PATHS = LabPaths(Path("/state"))


def test_fast_profile_shortens_detection_and_tolerations() -> None:
    kcm = controller_manager_argv(BINS, PATHS, PORTS, FAST)
    assert "--node-monitor-grace-period=5000ms" in kcm
    assert "--node-monitor-period=1000ms" in kcm
    api = apiserver_argv(BINS, PATHS, PORTS, FAST)
    assert "--default-unreachable-toleration-seconds=10" in api
    assert "--default-not-ready-toleration-seconds=10" in api


def test_real_profile_uses_upstream_defaults() -> None:
    kcm = controller_manager_argv(BINS, PATHS, PORTS, REAL)
    assert "--node-monitor-grace-period=50000ms" in kcm
    api = apiserver_argv(BINS, PATHS, PORTS, REAL)
    assert "--default-unreachable-toleration-seconds=300" in api


def test_everything_listens_on_loopback_only() -> None:
    api = apiserver_argv(BINS, PATHS, PORTS, FAST)
    assert "--bind-address=127.0.0.1" in api
    assert "--endpoint-reconciler-type=none" in api
    assert "--authorization-mode=RBAC" in api
    etcd = etcd_argv(BINS, PATHS, PORTS)
    urls = [a.split("=", 1)[1] for a in etcd if "-urls=" in a]
    assert urls
    assert all(u.startswith("http://127.0.0.1:") for u in urls)


def test_fast_profile_keeps_heartbeats_well_inside_the_grace_period() -> None:
    for profile in (FAST, REAL):
        # At least four missed renewals before a node is declared unhealthy.
        assert profile.node_monitor_grace_period_seconds >= 4 * profile.lease_renew_seconds
