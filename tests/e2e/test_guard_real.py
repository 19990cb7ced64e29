"""guard at upstream timings (`--profile real`: 10 s lease renewals, 50 s grace, 300 s
tolerations): a power-off of Traefik's worker is recovered long before Kubernetes alone would
even evict. Minutes long, so behind the `slow` marker; test_guard.py is its fast twin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from guardtools import guard_config, guards, record
from incident import TRAEFIK, running_pod
from labtools import LabHandle, has_taint, node_ready, running_lab, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
def real_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    with running_lab(tmp_path_factory.mktemp("real-lab") / "state", "--profile", "real") as lab:
        yield lab


def test_power_off_at_upstream_timings(real_lab: LabHandle, tmp_path: Path) -> None:
    lab = real_lab
    before = running_pod(lab, TRAEFIK)
    node = before["spec"]["nodeName"]
    # Upstream defaults except what guard must be told about this lab: its machines restart.
    config = guard_config(lab, tmp_path, restart_stopped=True, lease_stale_seconds=40)
    with guards(config, tmp_path):
        assert lab.cli("lab", "power-off", node).returncode == 0

        def moved() -> bool:
            now = running_pod(lab, TRAEFIK)
            return now["metadata"]["uid"] != before["metadata"]["uid"] and (
                now["spec"]["nodeName"] != node
            )

        wait_for("Traefik Running elsewhere", moved, timeout=120, interval=1)

        def back() -> bool:
            obj = lab.kubectl_json("get", "node", node)
            return (
                node_ready(obj) == "True"
                and not has_taint(obj, "node.kubernetes.io/out-of-service", "NoExecute")
                and not obj["spec"].get("unschedulable")
                and record(lab, node) is None
            )

        wait_for(f"{node} back", back, timeout=300, interval=2)
