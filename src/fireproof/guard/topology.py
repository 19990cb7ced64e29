"""The well-known topology labels, kept from the inventory: ``topology.kubernetes.io/zone`` is
the node's Proxmox host and ``topology.kubernetes.io/region`` its Proxmox cluster, the
convention of the Proxmox cloud-controller-manager (sergelogvinov/proxmox-cloud-controller-
manager). Spread constraints and doctor's failure-domain checks read them.

Never fight another writer: guard sets a label that is absent, and changes only a label it set
itself (listed in the ``fireproof.io/topology-labels`` annotation), as when the VM migrated to
another host. A value a CCM or a person wrote is left as it is.

Only a Ready node is relabelled. kube-controller-manager's node lifecycle controller registers a
zone (region + zone labels) only from its node list; when it writes an unhealthy node's status,
hits a conflict and re-reads the node, a zone it has not registered yet makes it dereference a
missing queue and panic (kubernetes/kubernetes#117555; the same root cause is described in
openyurtio/openyurt#2500). guard's own label write is such a conflict. The fault campaign found
it: guard labelled a node of a host that had just lost power, and the controller-manager died.
A Ready node's status is not written by the controller, so its new zone is registered from the
list first.
"""

from __future__ import annotations

from collections.abc import Mapping

ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"
OWNED = "fireproof.io/topology-labels"
"""Annotation: the topology labels guard wrote (comma-separated), the only ones it changes."""


def owned_labels(annotations: Mapping[str, str]) -> frozenset[str]:
    raw = annotations.get(OWNED, "")
    return frozenset(k for k in raw.split(",") if k in (ZONE, REGION))


def topology_patch(
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    host: str | None,
    region: str | None,
    *,
    ready: bool,
) -> dict[str, str]:
    """The labels to write on one node (empty: nothing to do, or not Ready yet)."""
    if not ready:
        return {}
    wanted = {ZONE: host, REGION: region}
    owned = owned_labels(annotations)
    return {
        key: value
        for key, value in wanted.items()
        if value and labels.get(key) != value and (key not in labels or key in owned)
    }


def owned_after(annotations: Mapping[str, str], patch: Mapping[str, str]) -> str:
    """The annotation's value once ``patch`` is written: guard owns what it wrote."""
    return ",".join(sorted(owned_labels(annotations) | set(patch)))
