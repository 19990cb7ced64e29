"""A whole Proxmox host dies under guard: its nodes are one failure domain, proven off through
the host's BMC (real IPMI, driven by ClusterLabs' fence_ipmilan and read back with ipmitool)
before any volume moves. The lab's hosts are machines with BMCs on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardtools import guard_config, guards, record
from hosttools import events, hosts, ipmitool_power, nodes_on, place_on, running_off
from incident import POSTGRES, TRAEFIK, attachments, pods, running_pod, volume_of
from labtools import LabHandle, node_ready, run_cli, wait_for

pytestmark = pytest.mark.lab

HOST = "pve-02"  # tazlab: 1 of the 3 control planes and 2 workers; its loss keeps etcd quorum


@pytest.fixture
def hlab(healthy_lab: LabHandle) -> Iterator[LabHandle]:
    yield healthy_lab
    healthy_lab.cli("lab", "bmc-fault", HOST, "none")
    healthy_lab.cli("lab", "host-on", HOST)


def test_a_host_power_cut_moves_traefik_and_postgres_with_no_human_step(
    hlab: LabHandle, tmp_path: Path
) -> None:
    lab = hlab
    shown = run_cli(
        "inventory", "show", "--config", str(lab.state_dir / "fireproof.yaml"), "-o", "json"
    )
    assert shown.returncode == 0, shown.stderr
    assert {(e["node"], e["host"], e["host_device"]) for e in json.loads(shown.stdout)} >= {
        ("tazlab-worker-02", HOST, f"bmc-{HOST}"),
        ("tazlab-cp-01", "pve-01", "bmc-pve-01"),
    }
    place_on(lab, HOST, TRAEFIK, POSTGRES)
    victims = nodes_on(lab, HOST)
    config = guard_config(lab, tmp_path, host_down_lease_seconds=3)
    with guards(config, tmp_path) as (guard,):
        assert lab.cli("lab", "host-off", HOST).returncode == 0
        for workload in (TRAEFIK, POSTGRES):
            wait_for(
                f"{workload[0]} Running on another host",
                lambda w=workload: running_off(lab, w, HOST),
                timeout=120,
            )
        wait_for(
            "every node of the host left off",
            lambda: all((record(lab, n) or {}).get("phase") == "left-off" for n in victims),
            timeout=60,
        )
        journal = guard.journal()
        assert guard.metric('fireproof_guard_fence_level_total{level="host"}') >= len(victims)
    # One failure domain, not a storm of three; each node proven off through the host's BMC
    # before its release, and left off: guard does not start what it did not stop.
    assert victims == ["tazlab-cp-02", "tazlab-worker-02", "tazlab-worker-04"]
    assert events(lab, "FireproofHostFenced") >= set(victims)
    for node in victims:
        done = [e for e in journal if e["node"] == node and e["status"] == "ok"]
        steps = [e["step"] for e in done]
        assert steps.index("fence") < steps.index("release"), steps
        fence = next(e for e in done if e["step"] == "fence")
        assert f"host {HOST} verified off via bmc-{HOST}" in fence["message"]
    assert "storm" not in guard.log()
    assert ipmitool_power(lab, HOST) == "Chassis Power is off"
    # guard keeps the Proxmox CCM's topology labels: the lab set the zone (left alone), guard
    # added the region, the Proxmox cluster's name.
    labels = lab.kubectl_json("get", "node", "tazlab-worker-01")["metadata"]["labels"]
    assert labels["topology.kubernetes.io/zone"] == "pve-01"
    assert labels["topology.kubernetes.io/region"] == "tazlab"
    # The host comes back: its nodes boot, rejoin and guard clears its taints and cordons.
    assert lab.cli("lab", "host-on", HOST).returncode == 0
    with guards(config, tmp_path):
        wait_for(
            "the host's nodes recovered",
            lambda: all(record(lab, n) is None for n in victims),
            timeout=120,
        )


def test_a_hung_host_is_fenced_through_its_bmc_and_nothing_moves_while_it_is_unreachable(
    hlab: LabHandle, tmp_path: Path
) -> None:
    lab = hlab
    place_on(lab, HOST, TRAEFIK)
    old = running_pod(lab, TRAEFIK)
    pv = volume_of(lab, "traefik", "traefik")
    config = guard_config(lab, tmp_path, host_down_lease_seconds=3)
    with guards(config, tmp_path) as (guard,):
        assert lab.cli("lab", "bmc-fault", HOST, "unreachable").returncode == 0
        assert lab.cli("lab", "host-hang", HOST).returncode == 0
        assert hosts(lab)[HOST]["power"] == "on"  # hung, not off: unreachable is not off
        wait_for(
            "a counted fencing failure",
            lambda: guard.metric("fireproof_guard_fencing_failures_total") >= 1,
            timeout=120,
        )
        # Nothing released: the old pod still holds its volume, nothing runs elsewhere.
        assert old["metadata"]["uid"] in [p["metadata"]["uid"] for p in pods(lab, TRAEFIK)]
        assert [va["spec"]["nodeName"] for va in attachments(lab, pv)] == [old["spec"]["nodeName"]]
        assert "FireproofFenceFailed" in {
            e["reason"] for e in lab.kubectl_json("get", "events", "-A")["items"]
        }
        assert lab.cli("lab", "bmc-fault", HOST, "none").returncode == 0
        wait_for(
            "Traefik Running on another host",
            lambda: running_off(lab, TRAEFIK, HOST),
            timeout=120,
        )
        journal = guard.journal()
        node = old["spec"]["nodeName"]
        done = [e["step"] for e in journal if e["node"] == node and e["status"] == "ok"]
        assert done.index("fence") < done.index("release"), done
        # guard powered the hung host off, so it powers it on again (strategy reboot): the
        # host's nodes come back and are untainted.
        wait_for(
            "the hung host's nodes back, records cleared",
            lambda: all(record(lab, n) is None for n in nodes_on(lab, HOST)),
            timeout=150,
        )
    host = hosts(lab)[HOST]
    assert host["power"] == "on"
    assert not host["hung"]


def test_a_host_power_off_drill_is_recovered_by_guard_and_restored(
    hlab: LabHandle, tmp_path: Path
) -> None:
    lab = hlab
    config = guard_config(lab, tmp_path, host_down_lease_seconds=3)
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    # The host of two of the three control planes: refused before anything is touched.
    refused = tmp_path / "pve-01.yaml"
    refused.write_text("name: pve-01\ntarget: {host: pve-01}\nfault: host-power-off\n")
    done = run_cli(
        "drill", "run", str(refused), "--config", str(config), "--lab-dir", str(lab.state_dir),
        "--yes", env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "below quorum" in done.stderr
    assert hosts(lab)["pve-01"]["power"] == "on"

    place_on(lab, HOST, TRAEFIK)
    spec = tmp_path / "host.yaml"
    spec.write_text(
        "name: pve-02-power-off\n"
        "target: {host-of: traefik/deployment/traefik}\n"
        "fault: host-power-off\n"
        "recovery: guard\n"
        "timeout: 180s\n"
        "slo:\n"
        "  - {workload: traefik/deployment/traefik, running_elsewhere_within: 90s}\n"
        "  - {no_double_attach: true}\n"
    )
    saved = tmp_path / "run.json"
    with guards(config, tmp_path):
        done = run_cli(
            "drill", "run", str(spec), "--config", str(config), "--lab-dir", str(lab.state_dir),
            "--yes", "--save", str(saved), env=env, timeout=400,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = json.loads(saved.read_text())
    assert run["spec"]["targets"] == [{"host-of": "traefik/deployment/traefik"}]
    assert sorted(t["node"] for t in run["targets"]) == nodes_on(lab, HOST)
    phases = [(e["phase"], e["object"]) for e in run["timeline"]]
    assert ("host-off", f"host/{HOST}") in phases
    fenced = [e["t"] for e in run["timeline"] if e["phase"] == "host-fenced"]
    running = [e["t"] for e in run["timeline"] if e["phase"] == "replacement-running"]
    assert fenced
    assert running
    assert min(fenced) <= min(running)
    assert all(r["passed"] for r in run["slos"])
    assert run["restore"]["problems"] == []
    assert hosts(lab)[HOST]["power"] == "on"


def test_losing_the_host_of_two_control_planes_is_a_total_outage_until_it_is_back(
    hlab: LabHandle,
) -> None:
    # tazlab runs 2 of its 3 control planes on pve-01: with it, etcd loses its quorum and the
    # API answers nobody, whatever any remediator does. The lab shows it, then recovers.
    lab = hlab
    try:
        done = lab.cli("lab", "host-off", "pve-01")
        assert done.returncode == 0, done.stderr
        assert "etcd has no quorum: 1 of 3 control-plane nodes up" in done.stderr
        wait_for(
            "the API server gone",
            lambda: lab.kubectl("get", "nodes", "--request-timeout=3s").returncode != 0,
            timeout=60,
        )
        status = lab.cli("lab", "status", "-o", "json")
        assert status.returncode == 1  # not healthy, and says why
        etcd = json.loads(status.stdout)["etcd"]
        assert etcd["quorate"] is False
        assert etcd["up"] == ["tazlab-cp-02"]
        done = lab.cli("lab", "host-on", "pve-01")
        assert done.returncode == 0, done.stderr
        assert "a majority of the control plane is back" in done.stdout
    finally:
        lab.cli("lab", "host-on", "pve-01")
    wait_for(
        "the API server back with every node Ready",
        lambda: _all_ready(lab),
        timeout=180,
    )
    assert json.loads(lab.cli("lab", "status", "-o", "json").stdout)["etcd"]["quorate"] is True


def _all_ready(lab: LabHandle) -> bool:
    done = lab.kubectl("get", "nodes", "-o", "json", "--request-timeout=5s")
    if done.returncode != 0:
        return False
    return all(node_ready(n) == "True" for n in json.loads(done.stdout)["items"])
