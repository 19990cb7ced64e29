"""Objects as manifests: read, list and server-side apply any kind the API server serves,
custom resources included (cert-manager's, Traefik's), as plain JSON documents.

For migrations that write objects of other projects: their shape is the upstream schema, which
the API server validates; fireproof never models it."""

from __future__ import annotations

from typing import Any

from lightkube import codecs
from lightkube.codecs import resource_registry
from lightkube.generic_resource import load_in_cluster_generic_resources
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from fireproof.kube.client import KubeNotFoundError
from fireproof.kube.cluster import Cluster


def load_custom_kinds(cluster: Cluster) -> None:
    """Teach the decoder the cluster's custom kinds (one LIST of its CRDs): call it before
    reading or applying a custom resource, and again after installing a CRD."""
    with cluster._guard():
        load_in_cluster_generic_resources(cluster.client)


def _resource(api_version: str, kind: str) -> Any:
    resource = resource_registry.load(api_version, kind)
    if resource is None:
        raise KubeNotFoundError(
            f"the API server serves no {kind} in {api_version}", status=404, reason="NotFound"
        )
    return resource


def served(cluster: Cluster, crd_name: str) -> bool:
    """Whether a CustomResourceDefinition (``plural.group``) is installed."""
    try:
        with cluster._guard():
            cluster.client.get(CustomResourceDefinition, crd_name)
    except KubeNotFoundError:
        return False
    return True


def read(cluster: Cluster, api_version: str, kind: str, namespace: str, name: str) -> Any:
    """The object as the API returns it (a JSON document), or None if it does not exist."""
    resource = _resource(api_version, kind)
    try:
        with cluster._guard():
            obj = cluster.client.get(resource, name, namespace=namespace)
    except KubeNotFoundError:
        return None
    return obj.to_dict()


def listed(cluster: Cluster, api_version: str, kind: str, namespace: str) -> list[Any]:
    """Every object of a kind in a namespace (``*``: all), as JSON documents."""
    resource = _resource(api_version, kind)
    with cluster._guard():
        return [obj.to_dict() for obj in cluster.client.list(resource, namespace=namespace)]


def apply(cluster: Cluster, document: dict[str, Any], field_manager: str) -> None:
    """Server-side apply one manifest (the API server validates it against its schema)."""
    obj = codecs.from_dict(document)
    with cluster._guard():
        cluster.client.apply(obj, field_manager=field_manager, force=True)


def replace(cluster: Cluster, document: dict[str, Any]) -> None:
    """PUT the whole object, conditional on its ``metadata.resourceVersion``: removes the
    fields it leaves out, whoever set them (server-side apply would keep those), and fails
    with a conflict when the object changed since it was read."""
    obj = codecs.from_dict(document)
    with cluster._guard():
        cluster.client.replace(obj)


def merge_patch(
    cluster: Cluster, api_version: str, kind: str, namespace: str, name: str, patch: Any
) -> None:
    """A JSON merge patch (RFC 7386: ``None`` removes a field)."""
    from lightkube.types import PatchType

    resource = _resource(api_version, kind)
    with cluster._guard():
        cluster.client.patch(resource, name, patch, namespace=namespace, patch_type=PatchType.MERGE)
