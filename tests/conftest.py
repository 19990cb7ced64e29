"""Session fixtures: one real lab (fast profile) shared by every integration and e2e test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from labtools import LabHandle, node_ready, run_cli, wait_for


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A running `tazlab` lab (the default topology), started and stopped through the CLI."""
    state_dir: Path = tmp_path_factory.mktemp("lab") / "state"
    up = run_cli("lab", "up", "--state-dir", str(state_dir), "--profile", "fast")
    if up.returncode != 0:
        run_cli("lab", "down", "--state-dir", str(state_dir))
        pytest.fail(f"lab up failed:\n{up.stdout}\n{up.stderr}")
    handle = LabHandle(state_dir)
    try:
        yield handle
    finally:
        run_cli("lab", "down", "--state-dir", str(state_dir))


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
