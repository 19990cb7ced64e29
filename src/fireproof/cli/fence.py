"""`fireproof fence status|off|on NODE` and `fireproof inventory show`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fireproof.cli.context import load_target, target_options
from fireproof.cli.params import NODE
from fireproof.cli.render import emit_json, progress, table, terminal_safe
from fireproof.errors import FireproofError, NotFoundError, UsageError

if TYPE_CHECKING:  # devices, inventory and clients load when a command runs, not for --help
    from fireproof.fencing import Fencer, Machine
    from fireproof.inventory import InventoryEntry
    from fireproof.wiring import Target

output_option = click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)


def _machine(target: Target, node: str) -> tuple[Machine, Fencer]:
    """The node's machine, proven to be the node's by its device, and that device."""
    from fireproof.inventory import verify_identity
    from fireproof.kube import system_uuid

    machine, source = target.mapping(node)
    if machine is None:
        raise UsageError(
            f"{node} has no fencing device in the inventory",
            hint="see `fireproof inventory show`",
        )
    fencer = target.fencer(machine.device)
    try:
        uuid = system_uuid(target.cluster.node(node))
    except NotFoundError:
        uuid = None  # a machine the cluster does not list (yet): its name must match
    verify_identity(node, uuid, machine, fencer, source)
    return machine, fencer


def confirm_or_abort(plan: list[str], yes: bool, what: str, *, err: bool = False) -> None:
    """Show the plan (on stderr with ``err``); go on only with --yes or an interactive yes."""
    click.echo("plan:", err=err)
    for number, step in enumerate(plan, 1):
        click.echo(f"  {number}. {terminal_safe(step)}", err=err)
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
@click.argument("node", type=NODE)
def fence_status(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    output: str,
    node: str,
) -> None:
    """Show NODE's power state as its fencing device reads it."""
    target = load_target(config_path, lab, kubeconfig, context)
    machine, fencer = _machine(target, node)
    state = fencer.status(machine)
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
    target = load_target(config_path, lab, kubeconfig, context)
    machine, fencer = _machine(target, node)
    verb = "power on" if on else "power off"
    confirm_or_abort(
        [f"{verb} {machine.label} of {node} through device {machine.device!r} and verify it"],
        yes,
        f"{verb} {node}",
    )
    progress(f"{verb} {machine.label} ...")
    state = fencer.on(machine) if on else fencer.off(machine)
    click.echo(f"{node}: verified {state} ({machine.label})")


@fence.command("off")
@target_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.argument("node", type=NODE)
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
@click.argument("node", type=NODE)
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


def _verify_all(target: Target, entries: list[InventoryEntry]) -> dict[str, tuple[str, str]]:
    """node -> (how its mapping was proven, why not): what `heal` would check before fencing."""
    from fireproof.inventory import IdentityMismatch, verify_identity
    from fireproof.kube import system_uuid

    uuids = {
        n.metadata.name: system_uuid(n)
        for n in target.cluster.nodes()
        if n.metadata and n.metadata.name
    }
    fencers: dict[str, Fencer | FireproofError] = {}
    out: dict[str, tuple[str, str]] = {}
    for entry in entries:
        machine = entry.machine
        if entry.problem:
            out[entry.node] = ("AMBIGUOUS", entry.problem)
            continue
        if machine is None:
            out[entry.node] = ("-", "")
            continue
        if machine.device not in fencers:
            try:
                fencers[machine.device] = target.fencer(machine.device)
            except FireproofError as exc:
                fencers[machine.device] = exc
        fencer = fencers[machine.device]
        if isinstance(fencer, FireproofError):
            out[entry.node] = ("not checked", f"device {machine.device!r}: {fencer.message}")
            continue
        try:
            method = verify_identity(
                entry.node, uuids.get(entry.node), machine, fencer, entry.source
            )
        except IdentityMismatch as exc:
            out[entry.node] = ("MISMATCH", exc.message)
        except FireproofError as exc:
            out[entry.node] = ("not checked", exc.message)
        else:
            out[entry.node] = (str(method), "")
    return out


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
    """List every node with its machine, fencing device, Proxmox host and the host's own
    device (its BMC, from hosts:), and how the mapping was proven.

    VERIFIED says how fireproof proved the machine is the node before it would fence it:
    uuid (the VM's SMBIOS UUID is the node's systemUUID), name (no UUID; the VM's name is the
    node's), pinned (fireproof.yaml names it; the device cannot identify machines). MISMATCH
    and AMBIGUOUS mappings are refused by fence and heal.
    """
    target = load_target(config_path, lab, kubeconfig, context)
    inv = target.inventory()
    entries = [inv.entries[name] for name in sorted(inv.entries)]
    verified = _verify_all(target, entries)
    host_devices = {host: entry.device for host, entry in target.config.hosts.items()}

    def host_device(e: InventoryEntry) -> str | None:
        host = e.machine.host if e.machine else None
        return host_devices.get(host) if host else None

    if output == "json":
        emit_json(
            [
                {
                    "node": e.node,
                    "device": e.machine.device if e.machine else None,
                    "host": e.machine.host if e.machine else None,
                    "vmid": e.machine.vmid if e.machine else None,
                    "plug": e.machine.plug if e.machine else None,
                    "host_device": host_device(e),
                    "source": e.source,
                    "verified": verified[e.node][0],
                    "problem": verified[e.node][1] or None,
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
            (host_device(e) or "NONE") if e.machine and e.machine.host else "-",
            e.source,
            verified[e.node][0],
        )
        for e in entries
    ]
    click.echo(table(("NODE", "DEVICE", "MACHINE", "HOST-DEVICE", "SOURCE", "VERIFIED"), rows))
    bare = sorted(
        {e.machine.host for e in entries if e.machine and e.machine.host and not host_device(e)}
    )
    if bare:
        click.echo(
            f"\nwarning: host(s) {', '.join(h for h in bare if h)} have no fencing device of "
            "their own (hosts: in fireproof.yaml): if a whole host dies, its nodes cannot be "
            "proven off"
        )
    unfenced = [e.node for e in entries if e.machine is None]
    if unfenced:
        click.echo(
            f"\nwarning: {len(unfenced)} node(s) have no fencing device and cannot be healed: "
            + ", ".join(unfenced)
        )
    refused = [(n, why) for n, (how, why) in verified.items() if how in ("MISMATCH", "AMBIGUOUS")]
    if refused:
        click.echo(
            f"\nerror: {len(refused)} mapping(s) are refused; fence and heal will not use them:"
        )
        for name, why in sorted(refused):
            click.echo(f"  {name}: {terminal_safe(why)}")
        click.echo(
            "hint: pin each machine in fireproof.yaml: inventory.nodes.NODE: {device, host, vmid}"
        )
    unchecked = [(n, why) for n, (how, why) in verified.items() if how == "not checked"]
    for name, why in sorted(unchecked):
        click.echo(f"note: {name}: identity not checked: {terminal_safe(why)}")
