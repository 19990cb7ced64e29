"""`fireproof fence status|off|on NODE` and `fireproof inventory show`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fireproof.cli.context import Target, target_options
from fireproof.cli.render import emit_json, progress, table
from fireproof.errors import UsageError
from fireproof.fencing import Machine

output_option = click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)


def _machine(target: Target, node: str) -> Machine:
    machine = target.machine(node)
    if machine is None:
        raise UsageError(
            f"{node} has no fencing device in the inventory",
            hint="see `fireproof inventory show`",
        )
    return machine


def confirm_or_abort(plan: list[str], yes: bool, what: str, *, err: bool = False) -> None:
    """Show the plan (on stderr with ``err``); go on only with --yes or an interactive yes."""
    click.echo("plan:", err=err)
    for number, step in enumerate(plan, 1):
        click.echo(f"  {number}. {step}", err=err)
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"refusing to {what} without confirmation",
            hint="rerun with --yes (or from a terminal to be asked)",
        )
    if not click.confirm(f"{what}?", default=False):
        raise click.exceptions.Abort()


@click.group()
def fence() -> None:
    """Read or set a node's power through its fencing device (hypervisor or BMC).

    Off and on are verified: the command returns only once the device reads the new state.
    """


@fence.command("status")
@target_options
@output_option
@click.argument("node")
def fence_status(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    output: str,
    node: str,
) -> None:
    """Show NODE's power state as its fencing device reads it."""
    target = Target.from_options(config_path, lab, kubeconfig, context)
    machine = _machine(target, node)
    state = target.fencer(machine.device).status(machine)
    if output == "json":
        emit_json(
            {"node": node, "device": machine.device, "machine": machine.label, "power": state}
        )
    else:
        click.echo(f"{node}: {state} ({machine.label}, device {machine.device})")


def _power(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    node: str,
    yes: bool,
    on: bool,
) -> None:
    target = Target.from_options(config_path, lab, kubeconfig, context)
    machine = _machine(target, node)
    verb = "power on" if on else "power off"
    confirm_or_abort(
        [f"{verb} {machine.label} of {node} through device {machine.device!r} and verify it"],
        yes,
        f"{verb} {node}",
    )
    fencer = target.fencer(machine.device)
    progress(f"{verb} {machine.label} ...")
    state = fencer.on(machine) if on else fencer.off(machine)
    click.echo(f"{node}: verified {state} ({machine.label})")


@fence.command("off")
@target_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.argument("node")
def fence_off(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    yes: bool,
    node: str,
) -> None:
    """Power NODE's machine off (hard) and verify it reads off. Releases nothing."""
    _power(config_path, lab, kubeconfig, context, node, yes, on=False)


@fence.command("on")
@target_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.argument("node")
def fence_on(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    yes: bool,
    node: str,
) -> None:
    """Power NODE's machine on and verify it reads on."""
    _power(config_path, lab, kubeconfig, context, node, yes, on=True)


@click.group()
def inventory() -> None:
    """Which machine runs each node, and which device fences it."""


@inventory.command("show")
@target_options
@output_option
def inventory_show(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    output: str,
) -> None:
    """List every node with its machine and fencing device; flag nodes without one."""
    target = Target.from_options(config_path, lab, kubeconfig, context)
    inv = target.inventory()
    entries = [inv.entries[name] for name in sorted(inv.entries)]
    if output == "json":
        emit_json(
            [
                {
                    "node": e.node,
                    "device": e.machine.device if e.machine else None,
                    "host": e.machine.host if e.machine else None,
                    "vmid": e.machine.vmid if e.machine else None,
                    "plug": e.machine.plug if e.machine else None,
                    "source": e.source,
                }
                for e in entries
            ]
        )
        return
    rows = [
        (
            e.node,
            e.machine.device if e.machine else "NONE",
            e.machine.label if e.machine else "-",
            e.source,
        )
        for e in entries
    ]
    click.echo(table(("NODE", "DEVICE", "MACHINE", "SOURCE"), rows))
    unfenced = [e.node for e in entries if e.machine is None]
    if unfenced:
        click.echo(
            f"\nwarning: {len(unfenced)} node(s) have no fencing device and cannot be healed: "
            + ", ".join(unfenced)
        )
