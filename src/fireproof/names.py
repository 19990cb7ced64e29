"""Kubernetes object names (RFC 1123), checked before a name goes into an API URL or a spec is
accepted: node names are DNS subdomains, namespace names DNS labels."""

from __future__ import annotations

import re

SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_node_name(text: str) -> bool:
    return len(text) <= 253 and SUBDOMAIN.match(text) is not None


def is_namespace_name(text: str) -> bool:
    return len(text) <= 63 and LABEL.match(text) is not None
