"""`fireproof doctor`: read the cluster once, report the incident's patterns and risks."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fireproof.cli import exitcodes
from fireproof.cli.context import load_target, target_options
from fireproof.cli.params import NAMESPACE, FiniteFloat
from fireproof.errors import FireproofError, UsageError

if TYPE_CHECKING:  # the checks and clients load when doctor runs, not for --help
    from fireproof.doctor.model import HypervisorCluster
    from fireproof.wiring import Target


def _explain(check_id: str) -> None:
    from fireproof.doctor import BY_ID

    check = BY_ID.get(check_id.upper())
    if check is None:
        raise UsageError(f"unknown check id {check_id!r}", hint=f"known: {', '.join(BY_ID)}")
    click.echo(f"{check.id} {check.name} ({check.severity}, {check.family})\n")
    click.echo(click.wrap_text(check.explain, width=90))
    click.echo(f"\nreads: {', '.join(check.needs)}")


@click.command()
@target_options
@click.option(
    "-n", "--namespace", type=NAMESPACE, default=None, help="Only look at this namespace's objects."
)
@click.option("--check", "only", multiple=True, metavar="ID", help="Run only these checks.")
@click.option("--skip", multiple=True, metavar="ID", help="Skip these checks.")
@click.option(
    "--fail-on",
    type=click.Choice(["critical", "warning"]),
    default=None,
    help="Exit 3 when a finding of this severity (or worse) exists. Default: exit 0.",
)
@click.option(
    "-o", "--output", type=click.Choice(["text", "json", "sarif", "junit"]), default="text"
)
@click.option("--explain", "explain", metavar="ID", default=None, help="Describe a check.")
@click.option("--list", "list_checks", is_flag=True, help="List every check.")
@click.option(
    "--stuck-after",
    type=FiniteFloat(0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds a pod may wait (ContainerCreating, Terminating) before it counts as stuck.",
)
def doctor(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    fail_on: str | None,
    output: str,
    explain: str | None,
    list_checks: bool,
    stuck_after: float,
) -> None:
    """Diagnose the incident's patterns (stale API endpoints, dead nodes, stuck volumes) and
    the architecture risks behind them, with evidence and the exact fix.

    Reads the cluster with one list call per resource kind. Resources the credentials may not
    read are reported as "not checked", never as healthy.
    """
    # The checks and the Kubernetes client load when it runs, not for --help.
    from fireproof.doctor import (
        CHECKS,
        Context,
        Severity,
        render_json,
        render_junit,
        render_sarif,
        render_text,
        run_checks,
        select,
    )
    from fireproof.kube.snapshot import take_snapshot

    if explain:
        _explain(explain)
        return
    if list_checks:
        for check in CHECKS:
            click.echo(f"{check.id:<7} {check.severity:<9} {check.family:<24} {check.name}")
        return
    checks = select(only, skip)
    if not checks:
        raise click.UsageError(
            "no check selected: --skip removes every check --check chose (see --list)"
        )
    target = load_target(config_path, lab, kubeconfig, context)
    cluster = target.cluster
    if namespace is not None and cluster.namespace_exists(namespace) is False:
        raise UsageError(
            f"namespace {namespace!r} does not exist in this cluster",
            hint="see `kubectl get namespaces`",
        )
    fenced: frozenset[str] | None = None
    hosts: dict[str, str] = {}
    if target.config.path is not None and (
        target.config.inventory.nodes
        or target.config.inventory.terraform
        or target.config.inventory.discover
    ):
        try:
            inventory = target.inventory()
            fenced = frozenset(n for n, e in inventory.entries.items() if e.machine)
            hosts = {
                n: e.machine.host
                for n, e in inventory.entries.items()
                if e.machine and e.machine.host
            }
        except FireproofError as exc:
            click.echo(f"warning: inventory not available ({exc.message})", err=True)
    kubeconfig_path = target.kubeconfig or _env_kubeconfig()
    hypervisors, unread = (None, None)
    if any(c.id == "FP-D4" for c in checks):
        hypervisors, unread = _hypervisors(target)
    ctx = Context(
        vip=target.config.cluster.vip,
        fenced_nodes=fenced,
        hosts=hosts,
        host_devices=frozenset(target.config.hosts) if target.config.path is not None else None,
        hypervisors=hypervisors,
        hypervisors_unread=unread,
        kubeconfig=kubeconfig_path,
        stuck_after=dt.timedelta(seconds=stuck_after),
    )
    needed = {kind for check in checks for kind in check.needs}
    snap = take_snapshot(cluster, namespace, needed, endpoints=any(c.id == "FP-A1" for c in checks))
    report = run_checks(checks, snap, ctx, cluster.server)
    if output == "json":
        click.echo(render_json(report))
    elif output == "sarif":
        click.echo(render_sarif(report))
    elif output == "junit":
        click.echo(render_junit(report))
    else:
        click.echo(render_text(report, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ))
    if report.blind:
        click.echo(
            "error: the API server refused every read this scan needs (401/403): nothing was "
            "checked, so nothing can be called healthy",
            err=True,
        )
        click.echo("hint: check the credentials and the RBAC of this identity", err=True)
        sys.exit(exitcodes.FAILURE)
    if fail_on is not None:
        threshold = Severity(fail_on).rank
        if any(f.severity.rank >= threshold for f in report.findings):
            sys.exit(exitcodes.FINDINGS)


def _hypervisors(target: Target) -> tuple[tuple[HypervisorCluster, ...] | None, str | None]:
    """Each Proxmox device's cluster (name, members, quorum, QDevice), or why none was read."""
    from fireproof.config import ProxmoxDevice
    from fireproof.doctor.model import HypervisorCluster
    from fireproof.fencing.proxmox import ProxmoxFencer

    devices = [d for d in target.config.devices.values() if isinstance(d, ProxmoxDevice)]
    if not devices:
        return None, "no Proxmox device in fireproof.yaml (--config or --lab)"
    out = []
    for device in devices:
        try:
            fencer = target.fencer(device.name)
            if not isinstance(fencer, ProxmoxFencer):
                continue
            facts = fencer.cluster_facts()
        except FireproofError as exc:
            return None, f"device {device.name}: {exc.message}"
        try:
            ha = fencer.ha_status()
        except FireproofError:
            ha = None  # HA unread: no host counts as HA-fenced
        ha_hosts = frozenset(node for _s, node in ha.services.values()) if ha else frozenset()
        out.append(
            HypervisorCluster(
                device.name, facts.name, facts.members, facts.quorate, facts.qdevice, ha_hosts
            )
        )
    return tuple(out), None


def _env_kubeconfig() -> Path | None:
    raw = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if raw:
        return Path(raw)
    default = Path.home() / ".kube" / "config"
    return default if default.is_file() else None
