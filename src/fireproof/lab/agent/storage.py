"""Longhorn-like storage: provisioning, a CSI external-attacher, and the kubelet's volume side.

The real attach/detach controller of kube-controller-manager decides what is attached where:
it creates and deletes VolumeAttachments, refuses a second attachment of a ReadWriteOnce
volume (``Multi-Attach error``) and writes ``node.status.volumesAttached``. This module only
plays the parts outside Kubernetes: the provisioner, the attacher that marks VolumeAttachments
attached, and each kubelet mounting attached volumes and reporting them in ``volumesInUse``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import lightkube
from lightkube.resources.core_v1 import Node, PersistentVolume, PersistentVolumeClaim, Pod
from lightkube.resources.storage_v1 import CSINode, VolumeAttachment

from fireproof.kube import KubeApiError, KubeUnreachableError, translate_errors
from fireproof.kube.watch import follow
from fireproof.lab.agent.fleet import Fleet, SimNode
from fireproof.lab.agent.objects import creating_pod_status, timestamp
from fireproof.lab.agent.pods import PodRunner

log = logging.getLogger(__name__)

DRIVER = "driver.longhorn.io"
STORAGE_CLASS = "longhorn"
FINALIZER = "external-attacher/driver-longhorn-io"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def unique_volume_name(handle: str) -> str:
    """How the kubelet and the attach/detach controller name a CSI volume."""
    return f"kubernetes.io/csi/{DRIVER}^{handle}"


class Storage:
    def __init__(self, fleet: Fleet, pods: PodRunner, mount_timeout: float) -> None:
        self.fleet = fleet
        self.pods = pods
        self.client = fleet.client
        self.mount_timeout = mount_timeout
        self.claims: dict[tuple[str, str], PersistentVolumeClaim] = {}
        self.volumes: dict[str, PersistentVolume] = {}
        self.mounted: dict[str, dict[str, set[tuple[str, str]]]] = {}
        """node -> unique volume name -> pods (namespace, name) using it."""
        self._waiting_since: dict[tuple[str, str], float] = {}
        self._warned: set[tuple[str, str]] = set()
        self._busy: set[str] = set()
        fleet.status_extra(self._volumes_in_use)
        fleet.on_node_update(self._node_updated)
        fleet.on_power_off(self._forget_mounts)
        pods.start_gate(self._volumes_ready)
        pods.on_pod_gone(self._pod_gone)

    # -- kubelet side -----------------------------------------------------------------------

    def _volumes_in_use(self, node: SimNode) -> dict[str, object]:
        return {"volumesInUse": sorted(self.mounted.get(node.spec.name, {}))}

    def _forget_mounts(self, node: SimNode) -> None:
        # A machine that lost power has nothing mounted when it boots again. Its last report
        # stays in the API server until then: that stale volumesInUse is what blocks detach.
        self.mounted.pop(node.spec.name, None)

    def _node_updated(self, _node: Node) -> None:
        self.pods.poke()  # volumesAttached may have changed: waiting pods may start now

    def pod_volumes(self, pod: Pod) -> list[tuple[str, str | None]]:
        """(pod volume name, unique CSI volume name or None while unbound) of PVC volumes."""
        out: list[tuple[str, str | None]] = []
        namespace = pod.metadata.namespace if pod.metadata else None
        for volume in (pod.spec.volumes if pod.spec else None) or []:
            if volume.persistentVolumeClaim is None:
                continue
            claim = self.claims.get(
                (namespace or "default", volume.persistentVolumeClaim.claimName)
            )
            pv_name = claim.spec.volumeName if claim and claim.spec else None
            pv = self.volumes.get(pv_name or "")
            csi = pv.spec.csi if pv and pv.spec else None
            if csi is None or csi.driver != DRIVER:
                out.append((volume.name, None))
            else:
                out.append((volume.name, unique_volume_name(csi.volumeHandle)))
        return out

    async def _volumes_ready(self, pod: Pod, node: SimNode) -> bool:
        volumes = self.pod_volumes(pod)
        if not volumes:
            return True
        api_node = self.fleet.api_nodes.get(node.spec.name)
        attached = {
            str(v.name)
            for v in (
                (api_node.status.volumesAttached if api_node and api_node.status else None) or []
            )
        }
        missing = [name for name, unique in volumes if unique is None or unique not in attached]
        key = (
            (pod.metadata.namespace or "default", pod.metadata.name or "")
            if pod.metadata
            else ("", "")
        )
        if missing:
            if key not in self._waiting_since:
                await self._report_creating(key, pod, node)
            since = self._waiting_since.setdefault(key, time.monotonic())
            if time.monotonic() - since >= self.mount_timeout and key not in self._warned:
                self._warned.add(key)
                await self.fleet.emit(
                    PodRunner.ref(pod),
                    "FailedMount",
                    "Unable to attach or mount volumes: "
                    f"unmounted volumes=[{' '.join(missing)}], "
                    f"unattached volumes=[{' '.join(missing)}]: "
                    "timed out waiting for the condition",
                    warning=True,
                    host=node.spec.name,
                )
            return False
        self._waiting_since.pop(key, None)
        self._warned.discard(key)
        node_mounts = self.mounted.setdefault(node.spec.name, {})
        changed = False
        for _name, unique in volumes:
            assert unique is not None  # noqa: S101 - missing ones returned above
            users = node_mounts.setdefault(unique, set())
            changed |= not users
            users.add(key)
        if changed:
            # The attach/detach controller must see the volume in use before the pod runs.
            try:
                await self.fleet.post_status(node)
            except (KubeApiError, KubeUnreachableError) as exc:
                log.warning("%s: volumesInUse not reported: %s", node.spec.name, exc)
                return False
        return True

    async def _report_creating(self, key: tuple[str, str], pod: Pod, node: SimNode) -> None:
        """Show the pod as kubectl users know it while it waits: ContainerCreating."""
        if pod.spec is None or (pod.status and pod.status.containerStatuses):
            return
        patch = creating_pod_status(
            containers=[(c.name, c.image or "") for c in pod.spec.containers],
            host_ip=node.spec.address,
            since=timestamp(),
        )
        try:
            with translate_errors():
                await self.client.patch(Pod.Status, key[1], patch, namespace=key[0])
        except (KubeApiError, KubeUnreachableError) as exc:
            log.info("pod %s/%s: ContainerCreating not reported: %s", *key, exc)

    async def _pod_gone(self, key: tuple[str, str], node_name: str) -> None:
        node_mounts = self.mounted.get(node_name, {})
        released = False
        for unique in list(node_mounts):
            node_mounts[unique].discard(key)
            if not node_mounts[unique]:
                del node_mounts[unique]
                released = True
        node = self.fleet.nodes.get(node_name)
        if released and node is not None and node.active:
            try:
                await self.fleet.post_status(node)
            except (KubeApiError, KubeUnreachableError) as exc:
                log.warning("%s: volumesInUse not reported: %s", node_name, exc)

    # -- provisioner ------------------------------------------------------------------------

    async def watch_claims(self) -> None:
        async def listed(claims: list[PersistentVolumeClaim]) -> None:
            self.claims.clear()
            for claim in claims:
                await changed("MODIFIED", claim)

        async def changed(kind: str, claim: PersistentVolumeClaim) -> None:
            meta = claim.metadata
            if meta is None or meta.name is None:
                return
            key = (meta.namespace or "default", meta.name)
            if kind == "DELETED":
                self.claims.pop(key, None)
                return
            self.claims[key] = claim
            self.pods.poke()
            if self._wants_volume(claim):
                await self._provision(claim)

        await follow(
            self.client,
            PersistentVolumeClaim,
            listed,
            changed,
            what="pvc",
            namespace=lightkube.ALL_NS,
        )

    @staticmethod
    def _wants_volume(claim: PersistentVolumeClaim) -> bool:
        spec, status = claim.spec, claim.status
        return (
            spec is not None
            and spec.storageClassName == STORAGE_CLASS
            and not spec.volumeName
            and (status is None or status.phase in (None, "Pending"))
            and (claim.metadata is None or claim.metadata.deletionTimestamp is None)
        )

    async def _provision(self, claim: PersistentVolumeClaim) -> None:
        meta, spec = claim.metadata, claim.spec
        if meta is None or spec is None:
            return
        name = f"pvc-{meta.uid}"
        if name in self.volumes:
            return
        request = (spec.resources.requests or {}) if spec.resources else {}
        manifest = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: DRIVER}},
            "spec": {
                "capacity": {"storage": request.get("storage", "1Gi")},
                "accessModes": spec.accessModes or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "volumeMode": spec.volumeMode or "Filesystem",
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta.namespace,
                    "name": meta.name,
                    "uid": meta.uid,
                },
                "csi": {
                    "driver": DRIVER,
                    "volumeHandle": name,
                    "fsType": "ext4",
                    "volumeAttributes": {"numberOfReplicas": "3", "staleReplicaTimeout": "30"},
                },
            },
        }
        try:
            with translate_errors():
                await self.client.create(
                    cast(PersistentVolume, PersistentVolume.from_dict(manifest))
                )
            log.info("provisioned %s for %s/%s", name, meta.namespace, meta.name)
        except KubeApiError as exc:
            if exc.status != 409:
                log.warning("provisioning %s failed: %s", name, exc)
        except KubeUnreachableError as exc:
            log.warning("provisioning %s failed: %s", name, exc)

    async def watch_volumes(self) -> None:
        async def listed(volumes: list[PersistentVolume]) -> None:
            self.volumes.clear()
            for pv in volumes:
                await self._volume_changed("MODIFIED", pv)

        await follow(self.client, PersistentVolume, listed, self._volume_changed, what="pv")

    async def _volume_changed(self, kind: str, pv: PersistentVolume) -> None:
        name = pv.metadata.name if pv.metadata else None
        if name is None:
            return
        if kind == "DELETED":
            self.volumes.pop(name, None)
            return
        self.volumes[name] = pv
        self.pods.poke()
        released = pv.status is not None and pv.status.phase == "Released"
        ours = (
            (pv.metadata.annotations or {}).get(PROVISIONED_BY) == DRIVER if pv.metadata else False
        )
        if released and ours and pv.spec and pv.spec.persistentVolumeReclaimPolicy == "Delete":
            try:
                with translate_errors():
                    await self.client.delete(PersistentVolume, name)
            except (KubeApiError, KubeUnreachableError) as exc:
                log.info("deleting released %s: %s", name, exc)

    # -- external attacher ------------------------------------------------------------------

    async def watch_attachments(self) -> None:
        async def listed(attachments: list[VolumeAttachment]) -> None:
            for va in attachments:
                await self._attachment_changed("MODIFIED", va)

        await follow(self.client, VolumeAttachment, listed, self._attachment_changed, what="va")

    async def _attachment_changed(self, kind: str, va: VolumeAttachment) -> None:
        if kind == "DELETED" or va.spec is None or va.spec.attacher != DRIVER:
            return
        name = va.metadata.name if va.metadata else None
        if name is None or name in self._busy:
            return
        deleting = va.metadata is not None and va.metadata.deletionTimestamp is not None
        attached = bool(va.status and va.status.attached)
        if deleting and FINALIZER in ((va.metadata.finalizers if va.metadata else None) or []):
            self._spawn(name, self._detach(va))
        elif not deleting and not attached:
            self._spawn(name, self._attach(va))

    def _spawn(self, name: str, work: Any) -> None:
        self._busy.add(name)
        task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(lambda _t: self._busy.discard(name))

    async def _attach(self, va: VolumeAttachment) -> None:
        name = (va.metadata.name if va.metadata else None) or ""
        finalizers = list((va.metadata.finalizers if va.metadata else None) or [])
        try:
            with translate_errors():
                if FINALIZER not in finalizers:
                    await self.client.patch(
                        VolumeAttachment,
                        name,
                        {"metadata": {"finalizers": [*finalizers, FINALIZER]}},
                        patch_type=lightkube.types.PatchType.MERGE,
                    )
                await asyncio.sleep(self.fleet.profile.attach_seconds)
                await self.client.patch(
                    VolumeAttachment.Status,
                    name,
                    {"status": {"attached": True, "attachmentMetadata": {"dev": "/dev/longhorn"}}},
                    patch_type=lightkube.types.PatchType.MERGE,
                )
            log.info(
                "attached %s (%s to %s)",
                name,
                va.spec.source.persistentVolumeName if va.spec else "?",
                va.spec.nodeName if va.spec else "?",
            )
        except (KubeApiError, KubeUnreachableError) as exc:
            log.warning("attach %s failed: %s", name, exc)

    async def _detach(self, va: VolumeAttachment) -> None:
        name = (va.metadata.name if va.metadata else None) or ""
        finalizers = [
            f for f in ((va.metadata.finalizers if va.metadata else None) or []) if f != FINALIZER
        ]
        await asyncio.sleep(self.fleet.profile.attach_seconds)
        try:
            with translate_errors():
                await self.client.patch(
                    VolumeAttachment,
                    name,
                    {"metadata": {"finalizers": finalizers}},
                    patch_type=lightkube.types.PatchType.MERGE,
                )
            log.info("detached %s", name)
        except (KubeApiError, KubeUnreachableError) as exc:
            log.warning("detach %s failed: %s", name, exc)

    # -- CSI node registration --------------------------------------------------------------

    async def register_csi_nodes(self) -> None:
        """Each kubelet registers the driver in its CSINode, as the node plugin would."""
        for node in self.fleet.nodes.values():
            manifest = {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "CSINode",
                "metadata": {
                    "name": node.spec.name,
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": node.spec.name,
                            "uid": node.uid,
                        }
                    ],
                },
                "spec": {
                    "drivers": [{"name": DRIVER, "nodeID": node.spec.name, "topologyKeys": None}]
                },
            }
            try:
                with translate_errors():
                    await self.client.create(cast(CSINode, CSINode.from_dict(manifest)))
            except KubeApiError as exc:
                if exc.status != 409:
                    log.warning("CSINode %s: %s", node.spec.name, exc)
