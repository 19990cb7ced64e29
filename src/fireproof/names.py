"""Kubernetes object names (RFC 1123), checked before a name goes into an API URL or a spec is
accepted: node names are DNS subdomains, namespace names DNS labels."""

from __future__ import annotations

import re

SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")
"""A key of a Secret's or ConfigMap's data."""


def is_node_name(text: str) -> bool:
    return len(text) <= 253 and SUBDOMAIN.fullmatch(text) is not None


def is_namespace_name(text: str) -> bool:
    return len(text) <= 63 and LABEL.fullmatch(text) is not None


def is_object_name(text: str) -> bool:
    """Most objects (Deployments, Secrets, Leases) are named as DNS subdomains."""
    return is_node_name(text)


def is_data_key(text: str) -> bool:
    return len(text) <= 253 and DATA_KEY.fullmatch(text) is not None and text not in (".", "..")
