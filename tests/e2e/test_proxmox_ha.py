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
from labtools import LabHandle, run_cli, running_lab, wait_for

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
    # The drill cuts pve-02's power through its BMC; guard is given no BMC: Proxmox HA is the
    # only way it can prove pve-02 off.
    drill_config = guard_config(lab, tmp_path, host_down_lease_seconds=3)
    doc = yaml.safe_load(drill_config.read_text())
    doc.pop("hosts")
    config = tmp_path / "guard-ha-only.yaml"
    config.write_text(yaml.safe_dump(doc))
    spec = tmp_path / "pve-02.yaml"
    spec.write_text(
        "name: pve-02-ha\n"
        "target: {host: pve-02}\n"
        "fault: host-power-off\n"
        "recovery: guard\n"
        "timeout: 120s\n"
        "slo:\n"
        "  - {workload: traefik/deployment/traefik, running_elsewhere_within: 60s}\n"
        "  - {no_double_attach: true}\n"
    )
    saved = tmp_path / "run.json"
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    # Only the node HA restarts elsewhere may take Traefik's replacement: it runs on another
    # host, so the drill counts it as elsewhere (it is a node of the lost host by name).
    others = [n for n, v in nodes.items() if "control-plane" not in v["roles"]]
    others = [n for n in others if n not in (PLAIN, HA_MANAGED)]
    for other in others:
        lab.kubectl("cordon", other)
    try:
        with guards(config, tmp_path) as (guard,):
            done = run_cli(
                "drill", "run", str(spec), "--config", str(drill_config),
                "--lab-dir", str(lab.state_dir), "--yes", "--save", str(saved), env=env,
                timeout=400,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            journal = [e for e in guard.journal() if e["node"] == PLAIN and e["status"] == "ok"]
            assert guard.metric('fireproof_guard_fence_level_total{level="ha"}') >= 1
    finally:
        for other in others:
            lab.kubectl("uncordon", other)
    run = json.loads(saved.read_text())
    first = {}
    for entry in run["timeline"]:
        first.setdefault((entry["phase"], entry["object"]), entry["t"])
    # pve-ha-manager's order: the host in fence, then HA's acknowledgement. The drill reads HA
    # once a second, guard on each look: guard's release may be stamped before the drill's
    # note of the acknowledgement, but never before HA put the host in fence.
    ha_fence = first[("ha-fence", f"host/{HOST}")]
    acknowledged = first[("ha-fence-acknowledged", f"host/{HOST}")]
    released = first[("released", f"node/{PLAIN}")]
    assert first[("host-off", f"host/{HOST}")] <= ha_fence < acknowledged
    assert ha_fence < released
    assert all(r["passed"] for r in run["slos"])
    # The restore finds the VMs HA restarted where they run now, not on the dead host.
    assert run["restore"]["problems"] == []
    recovered = first[("ha-recovered", f"node/{HA_MANAGED}")]
    running = [e for e in run["timeline"] if e["phase"] == "replacement-running"]
    assert running
    assert running[0]["evidence"].endswith(f"Running and Ready on {HA_MANAGED}")
    assert recovered <= running[0]["t"]
    steps = [e["step"] for e in journal]
    assert steps.index("fence") < steps.index("release"), steps
    assert "fenced by Proxmox HA" in next(e for e in journal if e["step"] == "fence")["message"]
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
