"""Actions for the incident's other scenes and for whole hosts: a host's power through its own
device (``hosts:``), a hung host and a control-plane address change (lab only), a workload
scaled (an RWO volume's second replica), and the `kubernetes` Endpoints repaired."""

from pathlib import Path
from typing import Any

from chaosfireproof import target_from
from fireproof.errors import UsageError
from fireproof.fencing import Fencer, Machine
from fireproof.heal import Journal, apply_endpoints, plan_endpoints
from fireproof.names import is_namespace_name, is_node_name
from fireproof.wiring import Target

__all__ = [
    "change_ip",
    "heal_api_endpoints",
    "host_hang",
    "host_power_off",
    "host_power_on",
    "scale_workload",
]


def _host(target: Target, host: str) -> tuple[Machine, Fencer]:
    entry = target.config.hosts.get(host)
    if entry is None:
        known = ", ".join(sorted(target.config.hosts)) or "none"
        raise UsageError(f"host {host!r} has no device under hosts: in fireproof.yaml ({known})")
    return Machine(node=host, device=entry.device, host=host), target.fencer(entry.device)


def host_power_off(
    host: str, configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Power a whole Proxmox HOST off through its own device (its BMC, from ``hosts:``); every
    VM on it dies at once. Returns what the device reads back."""
    machine, fencer = _host(target_from(configuration), host)
    return {"host": host, "device": machine.device, "power": fencer.off(machine).value}


def host_power_on(
    host: str, configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Power HOST on through its own device; returns what the device reads back."""
    machine, fencer = _host(target_from(configuration), host)
    return {"host": host, "device": machine.device, "power": fencer.on(machine).value}


def _lab(configuration: dict[str, Any] | None, what: str) -> Any:
    lab_dir = (configuration or {}).get("fireproof_lab_dir")
    if not lab_dir:
        raise UsageError(f"{what} works in the lab only: set fireproof_lab_dir")
    from fireproof.lab.lab import Lab  # the lab only when asked for

    return Lab(Path(str(lab_dir)))


def host_hang(
    host: str, configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Hang HOST (lab only): it stops answering and its VMs fall silent, its power stays on and
    its BMC reads on. `host_power_off` through the BMC (or guard's fence) ends it."""
    done: dict[str, Any] = _lab(configuration, "host_hang").agent().host_hang(host)
    return {"host": host, "hung": done.get("vms", [])}


def change_ip(
    node: str,
    new_address: str,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Give control-plane NODE a new address (lab only), leaving the `kubernetes` Endpoints
    stale, as in the incident's second scene. `heal_api_endpoints` repairs them."""
    if not is_node_name(node):
        raise UsageError(f"{node!r} is not a valid node name")
    lab = _lab(configuration, "change_ip")
    was = next((n["address"] for n in lab.agent().nodes() if n["name"] == node), None)
    _spec, done = lab.change_ip(node, new_address)
    return {"node": node, "address": done["address"], "was": was}


def scale_workload(
    namespace: str,
    kind: str,
    name: str,
    replicas: int,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Scale a Deployment or StatefulSet to REPLICAS; returns the count it had (to scale back).
    On an RWO volume a second replica fails to attach: the incident's fourth scene."""
    if not is_namespace_name(namespace):
        raise UsageError(f"{namespace!r} is not a valid namespace name")
    if not 0 <= int(replicas) <= 1000:
        raise UsageError(f"replicas must be between 0 and 1000, got {replicas}")
    cluster = target_from(configuration).cluster
    before = cluster.scale(kind.lower(), namespace, name, int(replicas))
    return {"workload": f"{namespace}/{kind.lower()}/{name}", "replicas": replicas, "was": before}


def heal_api_endpoints(
    to: str = "auto",
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`fireproof heal api-endpoints --yes`: point a stale `kubernetes` Endpoints at the VIP or
    the Ready control planes, and restart CoreDNS and kube-proxy."""
    target = target_from(configuration)
    cluster = target.cluster
    plan = plan_endpoints(cluster, vip=target.config.cluster.vip, to=to)
    if not plan.needed:
        return {"needed": False, "addresses": list(plan.current)}
    journal = Journal(
        "chaostoolkit heal api-endpoints",
        None,
        cluster=cluster,
        log_path=target.journal_path(),
        subject=("Endpoints", "default", "kubernetes"),
    )
    apply_endpoints(cluster, plan, journal)
    return journal.as_dict()
