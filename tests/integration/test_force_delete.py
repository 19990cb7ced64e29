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


def _uid(pod: Pod) -> str:
    assert pod.metadata is not None
    return str(pod.metadata.uid)


def test_force_delete_spares_a_pod_recreated_under_the_same_name(lab: LabHandle) -> None:
    cluster = Cluster.connect(lab.kubeconfig)
    name = f"force-{uuid.uuid4().hex[:8]}"
    old_uid = _uid(cluster.client.create(_pending_pod(name)))
    cluster.client.delete(Pod, name, namespace="default", grace_period=0)
    new_uid = _uid(cluster.client.create(_pending_pod(name)))
    assert new_uid != old_uid
    try:
        assert cluster.force_delete_pod("default", name, old_uid) is False
        assert _uid(cluster.client.get(Pod, name, namespace="default")) == new_uid
        assert cluster.force_delete_pod("default", name, new_uid) is True
        assert cluster.force_delete_pod("default", name, new_uid) is False
    finally:
        cluster.force_delete_pod("default", name, "")  # left over only when an assert failed
        cluster.close()
