"""The lab's Proxmox hosts as a test sees them: their BMCs (as `lab status` shows them), which
nodes each one carries, and workloads placed on one host or running off it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from incident import pods, running_pod
from labtools import LabHandle, wait_for


def hosts(lab: LabHandle) -> dict[str, dict[str, Any]]:
    status = json.loads(lab.cli("lab", "status", "-o", "json").stdout)
    return {h["name"]: h for h in status["hosts"]}


def nodes_on(lab: LabHandle, host: str) -> list[str]:
    return sorted(n for n, e in node_inventory(lab).items() if e["host"] == host)


def node_inventory(lab: LabHandle) -> dict[str, Any]:
    nodes: dict[str, Any] = yaml.safe_load((lab.state_dir / "inventory.yaml").read_text())["nodes"]
    return nodes


def ipmitool_power(lab: LabHandle, host: str) -> str:
    """The host's chassis power as Debian's ipmitool reads it from the BMC's IPMI side."""
    bmc = hosts(lab)[host]["bmc"]
    password = Path(bmc["password_file"]).read_text().strip()
    port = bmc["ports"]["ipmi"]
    done = subprocess.run(
        [
            *("ipmitool", "-I", "lanplus", "-H", bmc["address"], "-p", str(port)),
            *("-U", bmc["username"], "-E", "chassis", "power", "status"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"IPMI_PASSWORD": password, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def place_on(lab: LabHandle, host: str, *workloads: tuple[str, str]) -> None:
    """Move the workloads onto the host's workers (the others cordoned while they move)."""
    others = [
        n for n, e in node_inventory(lab).items() if e["host"] != host and e["role"] == "worker"
    ]
    for node in others:
        lab.kubectl("cordon", node)
    try:
        for workload in workloads:
            pod = running_pod(lab, workload)
            if node_inventory(lab)[pod["spec"]["nodeName"]]["host"] != host:
                lab.kubectl("delete", "pod", "-n", workload[0], pod["metadata"]["name"])

            def there(w: tuple[str, str] = workload) -> bool:
                now = running_pod(lab, w)
                return bool(now) and node_inventory(lab)[now["spec"]["nodeName"]]["host"] == host

            wait_for(f"{workload[0]} Running on {host}", there, timeout=120)
    finally:
        for node in others:
            lab.kubectl("uncordon", node)


def running_off(lab: LabHandle, workload: tuple[str, str], host: str) -> bool:
    inventory = node_inventory(lab)
    return any(
        p["status"].get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
        and inventory.get(p["spec"].get("nodeName") or "", {}).get("host") not in (None, host)
        for p in pods(lab, workload)
    )


def events(lab: LabHandle, reason: str) -> set[str]:
    return {
        e["involvedObject"].get("name")
        for e in lab.kubectl_json("get", "events", "-A")["items"]
        if e["reason"] == reason
    }
