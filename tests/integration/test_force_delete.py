"""A force-delete names the pod by UID: when a StatefulSet has already recreated the name (the
out-of-service taint lets pod GC remove the old pod first), the replacement stays."""

from __future__ import annotations

import uuid

import pytest
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod

from fireproof.kube import Cluster
from labtools import LabHandle

pytestmark = pytest.mark.lab


def _pending_pod(name: str) -> Pod:
    # No scheduler serves this name: the pod stays Pending and no lab kubelet touches it.
    return Pod(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec=PodSpec(
            schedulerName="nobody", containers=[Container(name="c", image="example/none")]
        ),
    )


def test_force_delete_spares_a_pod_recreated_under_the_same_name(lab: LabHandle) -> None:
    cluster = Cluster.connect(lab.kubeconfig)
    name = f"force-{uuid.uuid4().hex[:8]}"
    first = cluster.client.create(_pending_pod(name))
    assert first.metadata and first.metadata.uid
    old_uid = first.metadata.uid
    cluster.client.delete(Pod, name, namespace="default", grace_period=0)
    second = cluster.client.create(_pending_pod(name))
    assert second.metadata and second.metadata.uid and second.metadata.uid != old_uid
    try:
        assert cluster.force_delete_pod("default", name, old_uid) is False
        still = cluster.client.get(Pod, name, namespace="default")
        assert still.metadata and still.metadata.uid == second.metadata.uid
        assert cluster.force_delete_pod("default", name, second.metadata.uid) is True
        assert cluster.force_delete_pod("default", name, second.metadata.uid) is False
    finally:
        cluster.force_delete_pod("default", name, "")  # left over only when an assert failed
        cluster.close()
