"""`fireproof heal node NODE [--recover]` and `fireproof heal api-endpoints`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fireproof.cli import exitcodes
from fireproof.cli.context import load_target, target_options
from fireproof.cli.fence import confirm_or_abort
from fireproof.cli.params import NODE, FiniteFloat
from fireproof.cli.render import emit_json, progress, terminal_safe
from fireproof.config import REMEDIATION_METHODS
from fireproof.errors import FireproofError

if TYPE_CHECKING:  # the heal engine and its clients load when a command runs, not for --help
    from fireproof.heal import Journal


@click.group()
def heal() -> None:
    """Repair what a failure left behind, safely: plan, confirm, apply, verify.

    \b
      heal node NODE            fence a dead node, release its volumes, wait for its workloads
      heal node NODE --recover  power it back on, wait Ready, remove the taint, uncordon
      heal api-endpoints        point the `kubernetes` Endpoints at a live control plane
    """


def _timeline(journal: Journal, output: str) -> None:
    if output == "json":
        emit_json(journal.as_dict())
        return
    click.echo("timeline:")
    for step in journal.steps:
        mark = {"ok": "ok", "failed": "FAILED", "skipped": "skip"}[step.status]
        message = terminal_safe(step.message)
        click.echo(f"  +{step.seconds:6.1f}s  {mark:<6} {step.step:<10} {message}")


def _run(journal: Journal, output: str, action: Callable[[], None]) -> None:
    """Run an apply step; print the timeline whether it succeeded or not. Any way out after it
    started (an error, Ctrl-C, a bug) is recorded with what is left and how to finish."""
    try:
        action()
    except KeyboardInterrupt:
        summary = _abort(journal, "interrupted")
        _timeline(journal, output)
        click.echo(f"interrupted: {summary}", err=True)
        sys.exit(exitcodes.INTERRUPTED)
    except FireproofError as exc:
        _abort(journal, exc.message)
        _timeline(journal, output)
        raise
    except Exception as exc:
        _abort(journal, f"internal error: {type(exc).__name__}")
        _timeline(journal, output)
        raise
    _timeline(journal, output)


def _abort(journal: Journal, why: str) -> str:
    from fireproof.heal.steps import record_abort

    if journal.node is None:
        journal.record("aborted", f"aborted ({why})", status="failed")
        return why
    return record_abort(journal, journal.node, why)


@heal.command("node")
@target_options
@click.argument("node", type=NODE)
@click.option("--recover", is_flag=True, help="Bring the node back instead (after the repair).")
@click.option(
    "--method",
    type=click.Choice(REMEDIATION_METHODS),
    default=None,
    help="How to release volumes: auto (taint on >= 1.28), taint (out-of-service), delete "
    "(force-delete pods + VolumeAttachments). Default: fireproof.yaml's, else auto.",
)
@click.option(
    "--timeout",
    type=FiniteFloat(1),
    default=None,
    help="Seconds to wait for workloads (or for Ready with --recover). Default from config.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Show the plan and stop.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def heal_node(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    node: str,
    recover: bool,
    method: str | None,
    timeout: float | None,
    yes: bool,
    dry_run: bool,
    output: str,
) -> None:
    """Fence dead NODE through its hypervisor, verify it is off, release its volumes.

    Refuses when NODE is Ready, has no fencing device, or cannot be verified off: volumes are
    released only after the device reads the machine back as off. Every step is recorded as
    an Event on the node and in the JSON journal.
    """
    from fireproof.heal import (
        Journal,
        apply_heal,
        apply_recover,
        plan_heal,
        plan_recover,
        prove_identity,
    )

    target = load_target(config_path, lab, kubeconfig, context)
    cluster = target.cluster
    machine, source = target.mapping(node)
    settings = target.config.remediation
    quiet = output == "json"  # the plan goes to stderr so stdout stays one JSON document
    say = progress if quiet else click.echo
    journal = Journal(
        "heal node --recover" if recover else "heal node",
        node,
        cluster=cluster,
        log_path=target.journal_path(),
        warn=progress,
    )
    if recover:
        rplan = plan_recover(cluster, node, machine)
        fencer = target.fencer(rplan.machine.device)
        prove_identity(cluster, node, rplan.machine, fencer, source)
        if dry_run:
            confirm_or_abort(list(rplan.steps), True, "recover", err=quiet)
            return
        confirm_or_abort(list(rplan.steps), yes, f"recover {node}", err=quiet)
        _run(
            journal,
            output,
            lambda: apply_recover(
                cluster,
                fencer,
                rplan,
                journal,
                timeout=timeout or settings.recover_timeout_seconds,
                progress=progress,
            ),
        )
        return
    # The fencer is built (secrets resolved) and the machine's identity proven before anything
    # is written to the cluster.
    heal_fencer = target.fencer(machine.device) if machine is not None else None
    plan = plan_heal(
        cluster, node, machine, method=method or settings.method, fencer=heal_fencer, source=source
    )
    assert heal_fencer is not None  # noqa: S101 - plan_heal refused a node without a machine
    say(
        f"{node}: Ready={plan.ready}, machine {plan.machine.label} (device "
        f"{plan.machine.device!r}), Kubernetes {plan.server_version[0]}.{plan.server_version[1]}"
    )
    for pod in plan.pods:
        claims = f" [volumes: {', '.join(pod.claims)}]" if pod.claims else ""
        say(f"  pod {pod.label}{claims}")
    if dry_run:
        confirm_or_abort(list(plan.steps), True, "heal", err=quiet)
        return
    confirm_or_abort(list(plan.steps), yes, f"fence and heal {node}", err=quiet)
    _run(
        journal,
        output,
        lambda: apply_heal(
            cluster,
            heal_fencer,
            plan,
            journal,
            workload_timeout=timeout or settings.workload_timeout_seconds,
            progress=progress,
        ),
    )


@heal.command("api-endpoints")
@target_options
@click.option(
    "--to",
    type=click.Choice(["auto", "vip", "nodes"]),
    default="auto",
    show_default=True,
    help="auto: the VIP if fireproof.yaml names one, else the Ready control-plane addresses.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Show the plan and stop.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def heal_api_endpoints(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    to: str,
    yes: bool,
    dry_run: bool,
    output: str,
) -> None:
    """Repair a stale `kubernetes` Endpoints and restart CoreDNS and kube-proxy."""
    from fireproof.heal import Journal, apply_endpoints, plan_endpoints

    target = load_target(config_path, lab, kubeconfig, context)
    cluster = target.cluster
    plan = plan_endpoints(cluster, vip=target.config.cluster.vip, to=to)
    journal = Journal(
        "heal api-endpoints",
        None,
        cluster=cluster,
        log_path=target.journal_path(),
        subject=("Endpoints", "default", "kubernetes"),
        warn=progress,
    )
    if not plan.needed:
        click.echo(
            f"the kubernetes Endpoints already name {', '.join(plan.current)}: nothing to do"
        )
        return
    confirm_or_abort(
        list(plan.steps), yes or dry_run, "repair the kubernetes Endpoints", err=output == "json"
    )
    if dry_run:
        return
    _run(journal, output, lambda: apply_endpoints(cluster, plan, journal))
