"""A partitioned node: its kubelet falls silent, but its VM keeps running (split brain)."""

from __future__ import annotations

import json

import pytest

from labtools import LabHandle, has_taint, node_ready, wait_for

pytestmark = pytest.mark.lab
NODE = "tazlab-worker-04"


def _status(lab: LabHandle) -> dict[str, dict[str, str]]:
    result = lab.cli("lab", "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    return {n["name"]: n for n in json.loads(result.stdout)["nodes"]}


def test_partitioned_node_goes_unknown_while_its_vm_keeps_running(
    healthy_lab: LabHandle,
) -> None:
    lab = healthy_lab
    cut = lab.cli("lab", "partition", NODE)
    assert cut.returncode == 0, cut.stderr
    try:
        wait_for(
            "node Unknown and tainted",
            lambda: (
                node_ready(n := lab.kubectl_json("get", "node", NODE)) == "Unknown"
                and has_taint(n, "node.kubernetes.io/unreachable", "NoExecute")
            ),
            timeout=30,
        )
        row = _status(lab)[NODE]
        assert row["power"] == "running"  # what Proxmox says: the machine is alive
        assert row["kubelet"] == "partitioned"
    finally:
        back = lab.cli("lab", "unpartition", NODE)
        assert back.returncode == 0, back.stderr
    wait_for(
        "node Ready again",
        lambda: node_ready(lab.kubectl_json("get", "node", NODE)) == "True",
        timeout=30,
    )
