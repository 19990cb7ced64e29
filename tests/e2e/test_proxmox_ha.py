"""Proxmox HA as the only fence level, on a lab of three Proxmox hosts (`lab up --hosts 3`):
the emulator's HA manager fences a dead host as pve-ha-manager does (NodeStatus.pm, Manager.pm)
and restarts its HA-managed VMs elsewhere; guard takes HA's acknowledged fence as the proof
that the host's other VMs are dead, and releases them. No BMC is configured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from guardtools import guard_config, guards
from incident import TRAEFIK, pods, running_pod
from labtools import LabHandle, running_lab, wait_for

pytestmark = pytest.mark.lab

HOST = "pve-02"
PLAIN = "tazlab-worker-05"  # on pve-02, not HA-managed: only guard can move its workloads
HA_MANAGED = "tazlab-worker-02"  # on pve-02, HA-managed: HA restarts it on another host


@pytest.fixture(scope="module")
def ha_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    state_dir = tmp_path_factory.mktemp("ha") / "state"
    with running_lab(state_dir, "--hosts", "3", "--workers", "5") as lab:
        yield lab


def _ha(lab: LabHandle) -> dict[str, Any]:
    access = yaml.safe_load((lab.state_dir / "proxmox.yaml").read_text())
    done = requests.get(
        f"{access['url']}/api2/json/cluster/ha/status/manager_status",
        headers={"Authorization": f"PVEAPIToken={access['token_id']}={access['token_secret']}"},
        verify=access["ca_file"],
        timeout=10,
    )
    done.raise_for_status()
    data: dict[str, Any] = done.json()["data"]
    return data


def _nodes(lab: LabHandle) -> dict[str, dict[str, Any]]:
    status = json.loads(lab.cli("lab", "status", "-o", "json").stdout)
    return {n["name"]: n for n in status["nodes"]}


def _place_on(lab: LabHandle, node: str, workload: tuple[str, str]) -> None:
    workers = [n for n, v in _nodes(lab).items() if "control-plane" not in v["roles"]]
    others = [n for n in workers if n != node]
    for other in others:
        lab.kubectl("cordon", other)
    try:
        pod = running_pod(lab, workload)
        if pod["spec"]["nodeName"] != node:
            lab.kubectl("delete", "pod", "-n", workload[0], pod["metadata"]["name"])
        wait_for(
            f"{workload[0]} Running on {node}",
            lambda: (running_pod(lab, workload) or {}).get("spec", {}).get("nodeName") == node,
            timeout=120,
        )
    finally:
        for other in others:
            lab.kubectl("uncordon", other)


def test_ha_fences_the_dead_host_and_guard_releases_what_ha_does_not_restart(
    ha_lab: LabHandle, tmp_path: Path
) -> None:
    lab = ha_lab
    nodes = _nodes(lab)
    assert nodes[PLAIN]["hypervisor_host"] == HOST
    assert nodes[HA_MANAGED]["hypervisor_host"] == HOST
    _place_on(lab, PLAIN, TRAEFIK)
    old = running_pod(lab, TRAEFIK)
    config = guard_config(lab, tmp_path, host_down_lease_seconds=3)
    doc = yaml.safe_load(config.read_text())
    doc.pop("hosts")  # no BMC: Proxmox HA is the only way to prove pve-02 off
    config.write_text(yaml.safe_dump(doc))
    seen: list[str] = []
    with guards(config, tmp_path) as (guard,):
        done = lab.cli("lab", "host-off", HOST)
        assert done.returncode == 0, done.stderr

        def moved() -> bool:
            state = _ha(lab)["manager_status"]["node_status"][HOST]
            if not seen or seen[-1] != state:
                seen.append(state)
            return any(
                p["status"].get("phase") == "Running"
                and p["spec"].get("nodeName") != PLAIN
                and not p["metadata"].get("deletionTimestamp")
                for p in pods(lab, TRAEFIK)
            )

        wait_for("Traefik Running off the dead host", moved, timeout=180, interval=0.3)
        # pve-ha-manager's order: lost (unknown), fenced, acknowledged (back to unknown). The
        # first read may come before the CRM's next round (still online).
        assert [s for s in seen if s != "online"][:3] == ["unknown", "fence", "unknown"], seen
        journal = [e for e in guard.journal() if e["node"] == PLAIN and e["status"] == "ok"]
        steps = [e["step"] for e in journal]
        assert steps.index("fence") < steps.index("release"), steps
        fence = next(e for e in journal if e["step"] == "fence")
        assert "fenced by Proxmox HA" in fence["message"]
        assert guard.metric('fireproof_guard_fence_level_total{level="ha"}') >= 1
    assert old["metadata"]["uid"] not in [p["metadata"]["uid"] for p in pods(lab, TRAEFIK)]
    # HA restarted its own VM on a surviving host: the same node, Ready again, elsewhere.
    services = _ha(lab)["manager_status"]["service_status"]
    assert services["vm:202"]["state"] == "started"
    assert services["vm:202"]["node"] != HOST
    wait_for(
        f"{HA_MANAGED} Ready on another host",
        lambda: (
            _nodes(lab)[HA_MANAGED]["ready"] == "Ready"
            and _nodes(lab)[HA_MANAGED]["hypervisor_host"] != HOST
        ),
        timeout=120,
    )
