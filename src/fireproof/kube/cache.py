"""A watch cache of what guard looks at on every poll: Nodes, node Leases, VolumeAttachments.

Listing every Node and node Lease each second costs the whole cluster each second (a real
kubelet's Node is tens of KB: its images list alone is up to 50 entries). The cache lists once
and then watches, so the steady-state cost is the changes. It keeps only the compact facts
guard decides on, never the model objects.

Our own writes are fed back (:meth:`ClusterCache.wrote_node`) so the next look sees them even
if the watch event is a moment behind; an older event arriving after them is not applied.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node
from lightkube.resources.storage_v1 import VolumeAttachment

from fireproof.kube.cluster import NODE_LEASE_NAMESPACE, node_ready, ready_since, system_uuid
from fireproof.kube.watch import BackgroundWatches


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What guard needs of one Node."""

    name: str
    ready: str
    """The Ready condition's status: True, False or Unknown."""
    ready_since: dt.datetime | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    unschedulable: bool
    system_uuid: str | None
    provider_id: str | None
    resource_version: str | None


@dataclass(frozen=True, slots=True)
class AttachmentFacts:
    name: str
    node: str
    attached: bool


@dataclass(frozen=True, slots=True)
class CacheView:
    nodes: Mapping[str, NodeFacts]
    lease_renewals: Mapping[str, dt.datetime | None]
    """Node name -> when its kubelet last renewed its Lease in ``kube-node-lease``."""
    attachments: tuple[AttachmentFacts, ...]
    synced: bool
    """Every kind listed, and no watch lost since: False means what is here may be stale."""


def node_facts(node: Node) -> NodeFacts:
    meta = node.metadata
    spec = node.spec
    return NodeFacts(
        name=(meta.name if meta else None) or "",
        ready=node_ready(node),
        ready_since=ready_since(node),
        labels=dict((meta.labels if meta else None) or {}),
        annotations=dict((meta.annotations if meta else None) or {}),
        unschedulable=bool(spec.unschedulable) if spec else False,
        system_uuid=system_uuid(node),
        provider_id=(spec.providerID if spec else None) or None,
        resource_version=meta.resourceVersion if meta else None,
    )


def _newer(new: str | None, old: str | None) -> bool:
    """Whether ``new`` is not older than ``old``. resourceVersions are etcd revisions on every
    API server that exists; should one not be a number, the newest event wins."""
    if new is None or old is None or not (new.isdigit() and old.isdigit()):
        return True
    return int(new) >= int(old)


KINDS: dict[str, tuple[Any, str | None]] = {
    "Node": (Node, None),
    "Lease": (Lease, NODE_LEASE_NAMESPACE),
    "VolumeAttachment": (VolumeAttachment, None),
}


class ClusterCache(BackgroundWatches):
    thread_name = "fireproof-guard-watch"

    def __init__(self, kubeconfig: Path | None, context: str | None) -> None:
        super().__init__(kubeconfig, context)
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeFacts] = {}
        self._leases: dict[str, dt.datetime | None] = {}
        self._attachments: dict[str, AttachmentFacts] = {}
        self._live: set[str] = set()

    def kinds(self) -> dict[str, tuple[Any, str | None]]:
        return KINDS

    def view(self) -> CacheView:
        with self._lock:
            return CacheView(
                nodes=dict(self._nodes),
                lease_renewals=dict(self._leases),
                attachments=tuple(self._attachments.values()),
                synced=self._live >= set(KINDS),
            )

    def wrote_node(self, node: object) -> None:
        """A Node as our own write returned it: seen at once, not at the next watch event."""
        if isinstance(node, Node):
            with self._lock:
                self._put_node(node_facts(node))

    def on_list(self, kind: str, items: list[Any]) -> None:
        with self._lock:
            if kind == "Node":
                self._nodes = {}
                for item in items:
                    self._put_node(node_facts(item))
            elif kind == "Lease":
                self._leases = dict(_lease(item) for item in items)
            else:
                self._attachments = {a.name: a for a in map(_attachment, items)}
            self._live.add(kind)

    def on_change(self, kind: str, change: str, item: Any) -> None:
        with self._lock:
            if kind == "Node":
                facts = node_facts(item)
                if change == "DELETED":
                    self._nodes.pop(facts.name, None)
                else:
                    self._put_node(facts)
            elif kind == "Lease":
                name, renewed = _lease(item)
                if change == "DELETED":
                    self._leases.pop(name, None)
                else:
                    self._leases[name] = renewed
            else:
                attachment = _attachment(item)
                if change == "DELETED":
                    self._attachments.pop(attachment.name, None)
                else:
                    self._attachments[attachment.name] = attachment

    def on_lost(self, kind: str) -> None:
        with self._lock:
            self._live.discard(kind)

    def _put_node(self, facts: NodeFacts) -> None:
        known = self._nodes.get(facts.name)
        if known is None or _newer(facts.resource_version, known.resource_version):
            self._nodes[facts.name] = facts


def _lease(lease: Lease) -> tuple[str, dt.datetime | None]:
    name = (lease.metadata.name if lease.metadata else None) or ""
    return name, lease.spec.renewTime if lease.spec else None


def _attachment(va: VolumeAttachment) -> AttachmentFacts:
    name = (va.metadata.name if va.metadata else None) or ""
    attached = bool(va.status.attached) if va.status else False
    return AttachmentFacts(name=name, node=va.spec.nodeName, attached=attached)
