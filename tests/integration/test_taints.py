"""Taint writes on a Node that another writer changes at the same moment: the node lifecycle
controller lifts its own taints and writes the status of a node that has just become Ready,
exactly when a drill's restore or `heal --recover` removes the out-of-service taint. The
write is conditional on the resourceVersion read; a stale read is read again, not an error
(a drill once left a node tainted because of one). A release checks its machine is still off
before each try of its taint write, a retry's too."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from lightkube.resources.core_v1 import Node

from fireproof.kube import Cluster, KubeConflictError

from labtools import LabHandle

pytestmark = pytest.mark.lab

KEY = "fireproof.test/race"
NODE = "tazlab-worker-01"


class _Tries:
    """Counts the real taint writes (each try) and the ones the API server found stale."""

    def __init__(self, cluster: Cluster) -> None:
        self.writes = 0
        self.stale = 0
        real = cluster._replace_taints

        def counted(node: Any, taints: list[dict[str, Any]]) -> None:
            self.writes += 1
            try:
                real(node, taints)
            except KubeConflictError:
                self.stale += 1
                raise

        cluster._replace_taints = counted  # type: ignore[method-assign]


def _taint_keys(cluster: Cluster) -> set[str]:
    spec = cluster.node(NODE).spec
    return {t.key for t in ((spec.taints if spec else None) or [])}


def test_taint_writes_hold_while_another_writer_changes_the_node(lab: LabHandle) -> None:
    cluster, other = Cluster.connect(lab.kubeconfig), Cluster.connect(lab.kubeconfig)
    tries = _Tries(cluster)
    checks = [0]
    stop = threading.Event()

    def churn() -> None:  # the node lifecycle controller's part, ten times a second
        n = 0
        while not stop.wait(0.1):
            n += 1
            other.client.patch(Node, NODE, {"metadata": {"labels": {KEY: str(n)}}})

    def still_off() -> None:
        checks[0] += 1

    writer = threading.Thread(target=churn, daemon=True)
    writer.start()
    rounds = adds = 0
    try:
        # Until a write went stale at least once (else this test would prove nothing).
        while rounds < 10 or (tries.stale == 0 and rounds < 300):
            rounds += 1
            before = tries.writes
            assert cluster.add_taint(NODE, KEY, "x", "NoSchedule", before_write=still_off)
            adds += tries.writes - before
            assert KEY in _taint_keys(cluster)
            assert cluster.remove_taint(NODE, KEY) is True
            assert KEY not in _taint_keys(cluster)
        assert tries.stale > 0, f"no stale write in {rounds} rounds"
        assert checks[0] == adds  # one check right before every try of the add
    finally:
        stop.set()
        writer.join(10)
        cluster.remove_taint(NODE, KEY)
        other.client.patch(Node, NODE, {"metadata": {"labels": {KEY: None}}})
        cluster.close()
        other.close()
