"""Every way `heal node` can stop after it started acting is recorded, in the journal and as an
Event, with what was done, what is left and how to finish: Ctrl-C in the middle of fencing, and
an identity that may read but not write (RBAC), which also may not create Events."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from labtools import FIREPROOF, LabHandle, interrupt_when, node_ready, run_cli, wait_for

pytestmark = pytest.mark.lab
NODE = "tazlab-worker-03"


@pytest.fixture
def dead(healthy_lab: LabHandle) -> LabHandle:
    """The shared lab with NODE powered off and NotReady (healthy_lab restores it afterwards)."""
    healthy_lab.cli("lab", "power-off", NODE)
    wait_for(
        f"{NODE} NotReady",
        lambda: node_ready(healthy_lab.kubectl_json("get", "node", NODE)) != "True",
        timeout=60,
    )
    return healthy_lab


def _journal(state_home: Path) -> list[dict[str, Any]]:
    path = state_home / "fireproof" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _events(lab: LabHandle, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in lab.kubectl_json("get", "events", "-A")["items"]
        if e["involvedObject"].get("name") == NODE and e["reason"] == reason
    ]


def test_ctrl_c_while_fencing_records_what_is_left(dead: LabHandle, tmp_path: Path) -> None:
    state_home = tmp_path / "state"
    # Every Proxmox call takes 3 s: the interrupt lands while the stop is on its way.
    dead.cli("lab", "fault", "add", "latency", "--seconds", "3")
    heal = subprocess.Popen(
        [str(FIREPROOF), "heal", "node", NODE, "--lab", "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "FIREPROOF_LAB_DIR": str(dead.state_dir),
            "XDG_STATE_HOME": str(state_home),
        },
    )
    err = interrupt_when(
        heal, "the cordon", lambda: any(e["step"] == "cordon" for e in _journal(state_home))
    )
    assert heal.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: aborted (interrupted); done: cordon" in err
    assert f"{NODE} cordoned" in err
    assert "not verified" in err
    assert f"rerun `fireproof heal node {NODE}`" in err
    assert "--recover" in err
    last = _journal(state_home)[-1]
    assert last["step"] == "aborted"
    assert last["status"] == "failed"
    assert "nothing was released" in last["message"]
    dead.cli("lab", "fault", "clear")
    aborted = _events(dead, "FireproofAborted")
    assert aborted
    assert "done: cordon" in aborted[-1]["message"]


def _reader_kubeconfig(lab: LabHandle, tmp_path: Path) -> Path:
    """A ServiceAccount that may read what heal plans with, and write nothing at all."""
    lab.apply(
        """
apiVersion: v1
kind: ServiceAccount
metadata: {name: fireproof-reader, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: fireproof-reader}
rules:
  - apiGroups: [""]
    resources: [nodes, pods, namespaces, endpoints]
    verbs: [get, list, watch]
  - apiGroups: [storage.k8s.io]
    resources: [volumeattachments]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: fireproof-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: fireproof-reader}
subjects: [{kind: ServiceAccount, name: fireproof-reader, namespace: default}]
"""
    )
    token = lab.kubectl("create", "token", "fireproof-reader", "-n", "default")
    assert token.returncode == 0, token.stderr
    doc = yaml.safe_load(lab.kubeconfig.read_text())
    doc["users"] = [{"name": "reader", "user": {"token": token.stdout.strip()}}]
    for ctx in doc["contexts"]:
        ctx["context"]["user"] = "reader"
    path = tmp_path / "reader.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_refused_cordon_is_recorded_and_missing_events_warn_once(
    dead: LabHandle, tmp_path: Path
) -> None:
    state_home = tmp_path / "state"
    kubeconfig = _reader_kubeconfig(dead, tmp_path)
    done = run_cli(
        "heal", "node", NODE, "--config", str(dead.state_dir / "fireproof.yaml"),
        "--kubeconfig", str(kubeconfig), "--yes",
        env={"XDG_STATE_HOME": str(state_home)},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "internal error" not in done.stderr
    assert done.stderr.count("warning: cannot create Events") == 1
    journal = _journal(state_home)
    assert journal[-1]["step"] == "aborted"
    assert "forbidden" in journal[-1]["message"].lower()
    assert "done: nothing" in journal[-1]["message"]
    node = dead.kubectl_json("get", "node", NODE)
    assert not node["spec"].get("unschedulable")  # nothing was written
