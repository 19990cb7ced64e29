"""The lab's volume write ledger, checked as a user checks it: a partitioned node keeps writing
(its VM runs), a powered-off one stops at once, and `fireproof lab ledger check` names the split
brain that an unfenced release makes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from incident import OUT_OF_SERVICE, POSTGRES, running_pod, volume_of
from labtools import LabHandle, node_ready, run_cli, wait_for

pytestmark = pytest.mark.lab


def _check(lab: LabHandle, since: float) -> tuple[int, dict[str, Any]]:
    done = lab.cli("lab", "ledger", "check", "--since", str(since), "-o", "json")
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout)


def _writes(lab: LabHandle, since: float) -> list[dict[str, Any]]:
    lines = (lab.state_dir / "ledger.jsonl").read_text().splitlines()
    return [r for line in lines if line and (r := json.loads(line))["t"] >= since]


def _elsewhere(lab: LabHandle, node: str) -> dict[str, Any]:
    def moved() -> dict[str, Any] | None:
        pod = running_pod(lab, POSTGRES)
        return pod if pod["spec"]["nodeName"] != node else None

    return wait_for("postgres Running on another node", moved, timeout=90)


def test_an_unfenced_release_of_a_partitioned_node_is_a_split_brain(
    healthy_lab: LabHandle,
) -> None:
    lab = healthy_lab
    node = running_pod(lab, POSTGRES)["spec"]["nodeName"]
    volume = volume_of(lab, "blog", "data-postgres-0")
    since = time.time()
    assert lab.cli("lab", "partition", node).returncode == 0
    # What a person does who trusts that a silent node is dead: the taint, without fencing.
    lab.kubectl("taint", "node", node, f"{OUT_OF_SERVICE}=nodeshutdown:NoExecute")
    new_node = _elsewhere(lab, node)["spec"]["nodeName"]
    time.sleep(1.5)  # both VMs run: both keep writing

    code, report = _check(lab, since)
    assert code == 1, report
    found = [s for s in report["split_brains"] if s["volume"] == volume]
    assert found, report
    assert sorted(found[0]["nodes"]) == sorted([node, new_node])
    assert "blog/postgres-0" in found[0]["pods"]
    text = lab.cli("lab", "ledger", "check", "--since", str(since))
    assert text.returncode == 1
    assert volume in text.stdout
    assert node in text.stdout


def test_a_powered_off_node_stops_writing_before_its_volume_moves(healthy_lab: LabHandle) -> None:
    lab = healthy_lab
    node = running_pod(lab, POSTGRES)["spec"]["nodeName"]
    volume = volume_of(lab, "blog", "data-postgres-0")
    since = time.time()
    time.sleep(0.6)
    assert lab.cli("lab", "power-off", node).returncode == 0
    off_at = time.time()
    # heal acts on a node that stopped reporting (NotReady), as a person would.
    wait_for(
        f"{node} NotReady",
        lambda: node_ready(lab.kubectl_json("get", "node", node)) != "True",
        timeout=60,
    )
    healed = run_cli(
        "heal",
        "node",
        node,
        "--lab",
        "--yes",
        env={"FIREPROOF_LAB_DIR": str(lab.state_dir)},
        timeout=240,
    )
    assert healed.returncode == 0, healed.stdout + healed.stderr
    new_node = _elsewhere(lab, node)["spec"]["nodeName"]
    time.sleep(1.0)

    code, report = _check(lab, since)
    assert code == 0, report
    assert report["split_brains"] == []
    writes = [w for w in _writes(lab, since) if w["volume"] == volume]
    old = [w["t"] for w in writes if w["node"] == node]
    new = [w["t"] for w in writes if w["node"] == new_node]
    assert old, "the node wrote while it ran"
    assert max(old) <= off_at, "a powered-off VM writes nothing"
    assert new, "the replacement writes"
    assert min(new) > max(old)
    assert all(w["vm_running"] for w in writes)


def test_ledger_check_of_a_bad_file_is_a_readable_error(tmp_path: Path) -> None:
    bad = tmp_path / "ledger.jsonl"
    bad.write_text("not json\n")
    done = run_cli("lab", "ledger", "check", "--file", str(bad))
    assert done.returncode == 2, done.stderr
    assert f"{bad}:1: not a ledger record" in done.stderr
    assert "Traceback" not in done.stderr
    missing = run_cli("lab", "ledger", "check", "--state-dir", str(tmp_path / "nolab"))
    assert missing.returncode == 2
    assert "no ledger at" in missing.stderr
