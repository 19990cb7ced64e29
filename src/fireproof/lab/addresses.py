"""Addresses handed out inside the lab.

Node addresses and the VIP come from the documentation ranges of RFC 5737 so that nothing
can ever be reached by accident: the lab only ever contacts 127.0.0.1. Pod and service
addresses are the usual cluster-internal defaults and are never contacted either.
"""

from __future__ import annotations

import ipaddress

DOCUMENTATION_NETWORKS = (
    ipaddress.IPv4Network("192.0.2.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
    ipaddress.IPv4Network("203.0.113.0/24"),
)
SERVICE_CIDR = "10.96.0.0/12"
KUBERNETES_SERVICE_IP = "10.96.0.1"
POD_CIDR_PREFIX = "10.244"


def is_documentation_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in net for net in DOCUMENTATION_NETWORKS)


def documentation_address(index: int) -> str:
    """The ``index``-th usable host address across the documentation ranges (0-based)."""
    per_network = 253  # .1 to .253; .254 and .255 stay free, .250 is checked by callers
    network = index // per_network
    if network >= len(DOCUMENTATION_NETWORKS):
        raise ValueError(f"the lab has room for {per_network * 3} node addresses")
    return str(DOCUMENTATION_NETWORKS[network].network_address + 1 + index % per_network)


def pod_address(node_index: int, pod_index: int) -> str:
    """Pod IP on the node's /24 of 10.244.0.0/16 (flannel-style), recycled past 253 pods."""
    return f"{POD_CIDR_PREFIX}.{node_index % 256}.{2 + pod_index % 252}"
