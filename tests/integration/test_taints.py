"""Taint writes on a Node that another writer changes at the same moment: the node lifecycle
controller lifts its own taints and writes the status of a node that has just become Ready,
exactly when a drill's restore or `heal --recover` removes the out-of-service taint. The
write is conditional on the resourceVersion read; a stale read is read again, not an error
(a drill once left a node tainted because of one)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from lightkube.resources.core_v1 import Node

from fireproof.kube import Cluster

from labtools import LabHandle

pytestmark = pytest.mark.lab

KEY = "fireproof.test/race"
NODE = "tazlab-worker-01"


def _stale_taint_writes(audit: Path, since: int) -> int:
    """Taint patches of fireproof's that the API server refused for a changed Node (422)."""
    with audit.open() as log:
        log.seek(since)
        return sum(
            1
            for line in log
            if f"/nodes/{NODE}?fieldManager=fireproof" in line
            and json.loads(line)["responseStatus"].get("code") == 422
        )


def _taint_keys(cluster: Cluster) -> set[str]:
    spec = cluster.node(NODE).spec
    return {t.key for t in ((spec.taints if spec else None) or [])}


def test_taint_writes_hold_while_another_writer_changes_the_node(lab: LabHandle) -> None:
    cluster, other = Cluster.connect(lab.kubeconfig), Cluster.connect(lab.kubeconfig)
    audit = lab.state_dir / "logs" / "audit.jsonl"
    start = audit.stat().st_size
    stop = threading.Event()

    def churn() -> None:  # the node lifecycle controller's part, ten times a second
        n = 0
        while not stop.wait(0.1):
            n += 1
            other.client.patch(Node, NODE, {"metadata": {"labels": {KEY: str(n)}}})

    writer = threading.Thread(target=churn, daemon=True)
    writer.start()
    rounds = 0
    try:
        # Until the race happened at least once (else this test would prove nothing).
        while rounds < 10 or (_stale_taint_writes(audit, start) == 0 and rounds < 300):
            rounds += 1
            assert cluster.add_taint(NODE, KEY, "x", "NoSchedule") is True
            assert KEY in _taint_keys(cluster)
            assert cluster.remove_taint(NODE, KEY) is True
            assert KEY not in _taint_keys(cluster)
        assert _stale_taint_writes(audit, start) > 0, f"no stale write in {rounds} rounds"
    finally:
        stop.set()
        writer.join(10)
        cluster.remove_taint(NODE, KEY)
        other.client.patch(Node, NODE, {"metadata": {"labels": {KEY: None}}})
        cluster.close()
        other.close()
