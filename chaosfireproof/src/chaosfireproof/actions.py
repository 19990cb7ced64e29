"""Actions: power a node's machine off or on through its fencing device (after proving it is
the node's machine), partition it (lab only), heal it (`heal node`)."""

from pathlib import Path
from typing import Any

from chaosfireproof import target_from
from fireproof.errors import UsageError
from fireproof.fencing import Fencer, Machine
from fireproof.heal import apply_heal, plan_heal
from fireproof.heal.journal import Journal
from fireproof.heal.node import prove_identity
from fireproof.wiring import Target

__all__ = ["heal_node", "partition", "power_off", "power_on"]


def _machine(target: Target, node: str) -> tuple[Machine, Fencer]:
    machine, source = target.mapping(node)
    if machine is None:
        raise UsageError(f"{node} has no fencing device in the inventory")
    fencer = target.fencer(machine.device)
    prove_identity(target.cluster, node, machine, fencer, source)
    return machine, fencer


def power_off(
    node: str, configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Hard power-off (stop) of NODE's machine; returns what the device reads back."""
    machine, fencer = _machine(target_from(configuration), node)
    return {"node": node, "machine": machine.label, "power": fencer.off(machine).value}


def power_on(
    node: str, configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Power NODE's machine on; returns what the device reads back."""
    machine, fencer = _machine(target_from(configuration), node)
    return {"node": node, "machine": machine.label, "power": fencer.on(machine).value}


def partition(
    node: str,
    cut: bool = True,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cut NODE off the network while its VM runs (lab only; `cut: false` reconnects)."""
    lab_dir = (configuration or {}).get("fireproof_lab_dir")
    if not lab_dir:
        raise UsageError("partition works in the lab only: set fireproof_lab_dir")
    from fireproof.lab.lab import Lab  # the lab only when asked for

    Lab(Path(str(lab_dir))).partition(node, cut=cut)
    return {"node": node, "partitioned": cut}


def heal_node(
    node: str, configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`fireproof heal node NODE --yes`: fence, verify off, release, wait for the workloads."""
    target = target_from(configuration)
    machine, fencer = _machine(target, node)
    cluster = target.cluster
    settings = target.config.remediation
    plan = plan_heal(cluster, node, machine, method=settings.method, fencer=fencer)
    journal = Journal(
        "chaostoolkit heal node", node, cluster=cluster, log_path=target.journal_path()
    )
    apply_heal(
        cluster,
        fencer,
        plan,
        journal,
        workload_timeout=settings.workload_timeout_seconds,
        progress=lambda _line: None,
    )
    return journal.as_dict()
