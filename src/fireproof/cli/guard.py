"""`fireproof guard run` and `fireproof guard status`."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType

import click

from fireproof.cli.context import load_target, target_options
from fireproof.cli.render import emit_json, table


@click.group()
def guard() -> None:
    """Recover dead and partitioned nodes with no human at the keyboard.

    \b
      guard run      the controller: detect, fence (verified off), release, bring back
      guard status   the leader, its epoch and each node's remediation phase

    Start with `guard run --dry-run`: it watches and prints what it would do, touching nothing.
    """


@guard.command("run")
@target_options
@click.option("--dry-run", is_flag=True, help="Observe and print what would be done; no writes.")
@click.option(
    "--metrics-address",
    default="127.0.0.1:9108",
    show_default=True,
    help="HOST:PORT for /metrics, /healthz and /readyz (port 0: any free port; '' : none).",
)
@click.option(
    "--id",
    "identity",
    default=None,
    help="This replica's name in the leader Lease (default: hostname-pid).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logs.")
def guard_run(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    dry_run: bool,
    metrics_address: str,
    identity: str | None,
    verbose: bool,
) -> None:
    """Run the guard controller in the foreground until SIGTERM or Ctrl-C.

    Settings come from fireproof.yaml's `guard:` section (poll interval, lease staleness,
    strategy, max_unhealthy, leader Lease); logs go to stderr (JSON lines when not a terminal).
    """
    # The controller and its clients load when it runs, not for --help.
    from fireproof.guard import (
        FAILING_LOOKS_NOT_READY,
        Guard,
        GuardMetrics,
        PolicySettings,
        parse_address,
        serve,
        setup_logging,
    )
    from fireproof.kube.cache import ClusterCache
    from fireproof.wiring import journal_path

    address = parse_address(metrics_address) if metrics_address else None
    setup_logging(verbose)
    target = load_target(config_path, lab, kubeconfig, context)
    settings = target.config.guard
    # Fail on a bad device, secret or unreachable API now, with one clear line.
    target.cluster.nodes()
    for name in target.config.devices:
        target.fencer(name)
    cache = ClusterCache(target.kubeconfig, target.context)
    if not cache.start(timeout=30):
        click.echo("warning: the watches have not listed the cluster yet; guard waits", err=True)
    metrics = GuardMetrics()
    controller = Guard(
        target.cluster,
        cache,
        target.inventory,
        target.fencer,
        PolicySettings(
            settings,
            target.config.remediation,
            {host: entry.device for host, entry in target.config.hosts.items()},
        ),
        identity or f"{socket.gethostname()}-{os.getpid()}",
        metrics,
        dry_run=dry_run,
        journal_path=journal_path(),
        vip=target.config.cluster.vip,
        say=lambda m: click.echo(f"dry-run: {m}"),
        wrote_node=cache.wrote_node,
    )
    server = None
    if metrics_address:
        limit = settings.poll_interval_seconds * 5 + 10

        def ready() -> bool:
            recent = time.monotonic() - metrics.last_look < limit
            return recent and metrics.failing_looks < FAILING_LOOKS_NOT_READY

        assert address is not None  # noqa: S101 - parsed above with metrics_address
        server = serve(metrics, address, ready)
        host, port = server.server_address[:2]
        shown = host.decode() if isinstance(host, bytes) else host
        click.echo(f"metrics on http://{shown}:{port}/metrics", err=True)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    mode = "dry run: nothing will be changed" if dry_run else f"as {controller.identity}"
    click.echo(f"guard running {mode}", err=True)
    try:
        controller.run(stop)
    finally:
        cache.stop()
        if server is not None:
            server.shutdown()
    click.echo("guard stopped", err=True)


@guard.command("status")
@target_options
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def guard_status(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    output: str,
) -> None:
    """Show the guard leader, its epoch and every node's remediation phase."""
    from fireproof.guard import ANNOTATION, Remediation
    from fireproof.kube import lease_fresh

    target = load_target(config_path, lab, kubeconfig, context)
    settings = target.config.guard
    cluster = target.cluster
    lease = cluster.lease(settings.lease_namespace, settings.lease_name)
    spec = lease.spec if lease else None
    now = dt.datetime.now(dt.UTC)
    holder = spec.holderIdentity if spec else None
    renewed = spec.renewTime if spec else None
    age = (now - renewed).total_seconds() if renewed else None
    alive = lease_fresh(lease, now.timestamp(), settings.lease_duration_seconds)
    rows = []
    for node in cluster.nodes():
        name = node.metadata.name if node.metadata else None
        annotations = (node.metadata.annotations if node.metadata else None) or {}
        record = Remediation.from_annotation(annotations.get(ANNOTATION))
        if name and record:
            rows.append((name, record))
    if output == "json":
        emit_json(
            {
                "lease": f"{settings.lease_namespace}/{settings.lease_name}",
                "leader": holder if alive else None,
                "epoch": spec.leaseTransitions if spec else None,
                "renewed_seconds_ago": round(age, 1) if age is not None else None,
                "remediations": [
                    {
                        "node": n,
                        "phase": str(r.phase),
                        "reason": str(r.reason),
                        "epoch": r.epoch,
                        "attempts": r.attempts,
                        "failures": r.failures,
                    }
                    for n, r in rows
                ],
            }
        )
        return
    if alive:
        click.echo(
            f"leader: {holder} (epoch {spec.leaseTransitions if spec else 0}, renewed "
            f"{age:.1f} s ago; Lease {settings.lease_namespace}/{settings.lease_name})"
        )
    else:
        click.echo(f"leader: none (Lease {settings.lease_namespace}/{settings.lease_name})")
    if not rows:
        click.echo("no remediation in progress")
        return
    click.echo(
        table(
            ("NODE", "PHASE", "REASON", "ATTEMPTS", "FAILURES", "EPOCH"),
            [
                (n, str(r.phase), str(r.reason), str(r.attempts), str(r.failures), str(r.epoch))
                for n, r in rows
            ],
        )
    )
