"""Phase 1 of the incident: control-plane VMs change address, the `kubernetes` Endpoints stay
stale, and every pod that talks to the API through 10.96.0.1 crash-loops until they are fixed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labtools import LabHandle, wait_for

pytestmark = pytest.mark.lab
CONTROL_PLANE = ["tazlab-cp-01", "tazlab-cp-02", "tazlab-cp-03"]
NEW_ADDRESSES = ["192.0.2.171", "192.0.2.172", "192.0.2.173"]
NEEDS_API = [("kube-system", "k8s-app=kube-dns"), ("longhorn-system", "app=longhorn-manager")]


def _endpoints(lab: LabHandle) -> list[str]:
    ep = lab.kubectl_json("get", "endpoints", "kubernetes", "-n", "default")
    return [a["ip"] for s in ep.get("subsets", []) for a in s.get("addresses", [])]


def _set_endpoints(lab: LabHandle, addresses: list[str]) -> None:
    patch = {
        "subsets": [
            {
                "addresses": [{"ip": a} for a in addresses],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            }
        ]
    }
    result = lab.kubectl(
        "patch", "endpoints", "kubernetes", "-n", "default", "--type=merge", "-p", json.dumps(patch)
    )
    assert result.returncode == 0, result.stderr


def _pods(lab: LabHandle, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = lab.kubectl_json("get", "pods", "-n", namespace, "-l", selector)[
        "items"
    ]
    return items


def _crash_looping(pod: dict[str, Any]) -> bool:
    statuses = pod["status"].get("containerStatuses") or []
    return bool(statuses) and all(
        s["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" for s in statuses
    )


def _running_ready(pod: dict[str, Any]) -> bool:
    statuses = pod["status"].get("containerStatuses") or []
    return bool(statuses) and all(s["ready"] and "running" in s["state"] for s in statuses)


def test_change_ip_leaves_endpoints_stale_and_api_clients_crash_loop(
    healthy_lab: LabHandle,
) -> None:
    lab = healthy_lab
    original = _endpoints(lab)
    assert len(original) == 3
    for namespace, selector in NEEDS_API:
        wait_for(
            f"{selector} Running",
            lambda ns=namespace, sel=selector: all(_running_ready(p) for p in _pods(lab, ns, sel)),
        )
    try:
        for node, address in zip(CONTROL_PLANE, NEW_ADDRESSES, strict=True):
            changed = lab.cli("lab", "change-ip", node, address)
            assert changed.returncode == 0, changed.stderr
            assert "Endpoints were not updated" in changed.stdout
        assert _endpoints(lab) == original  # stale, exactly as in the incident

        for namespace, selector in NEEDS_API:
            crashed = wait_for(
                f"{selector} in CrashLoopBackOff",
                lambda ns=namespace, sel=selector: (
                    p if (p := _pods(lab, ns, sel)) and all(_crash_looping(x) for x in p) else None
                ),
                timeout=60,
            )
            for pod in crashed:
                status = pod["status"]["containerStatuses"][0]
                assert status["restartCount"] >= 1
                message = status["lastState"]["terminated"]["message"]
                assert "dial tcp 10.96.0.1:443: connect: no route to host" in message
        # The node objects report the new addresses: the evidence a doctor can compare.
        wait_for(
            "new address reported",
            lambda: (
                NEW_ADDRESSES[0]
                in [
                    a["address"]
                    for a in lab.kubectl_json("get", "node", CONTROL_PLANE[0])["status"][
                        "addresses"
                    ]
                ]
            ),
            timeout=20,
        )

        # The fix a human (or `fireproof heal api-endpoints`) applies: point them at live ones.
        _set_endpoints(lab, NEW_ADDRESSES)
        for namespace, selector in NEEDS_API:
            recovered = wait_for(
                f"{selector} Running again",
                lambda ns=namespace, sel=selector: (
                    p if (p := _pods(lab, ns, sel)) and all(_running_ready(x) for x in p) else None
                ),
                timeout=90,
            )
            assert all(
                s["restartCount"] >= 2
                for pod in recovered
                for s in pod["status"]["containerStatuses"]
            )
    finally:
        for node, address in zip(CONTROL_PLANE, original, strict=True):
            lab.cli("lab", "change-ip", node, address)
        _set_endpoints(lab, original)
