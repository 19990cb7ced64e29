"""Session fixtures: one real lab (fast profile) shared by every integration and e2e test."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from labtools import LabHandle, node_ready, running_lab, wait_for


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A running `tazlab` lab (the default topology), started and stopped through the CLI."""
    with running_lab(tmp_path_factory.mktemp("lab") / "state", "--profile", "fast") as handle:
        yield handle


@pytest.fixture
def healthy_lab(lab: LabHandle) -> LabHandle:
    """The shared lab with every machine running, no fault, every node Ready (restored if not)."""
    lab.cli("lab", "fault", "clear")
    status = lab.cli("lab", "status", "-o", "json")
    for node in json.loads(status.stdout)["nodes"]:
        if node["power"] != "running":
            lab.cli("lab", "power-on", node["name"])
        if node["kubelet"] == "partitioned":
            lab.cli("lab", "unpartition", node["name"])
    wait_for(
        "all nodes Ready",
        lambda: all(node_ready(n) == "True" for n in lab.kubectl_json("get", "nodes")["items"]),
        timeout=60,
    )
    return lab
