"""`fireproof migrate traefik-acme`: Traefik's certificates out of acme.json, into Secrets."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import click

from fireproof.cli.context import load_target, target_options
from fireproof.cli.fence import confirm_or_abort
from fireproof.cli.params import FiniteFloat
from fireproof.cli.render import emit_json, progress, terminal_safe
from fireproof.errors import FireproofError


@click.group()
def migrate() -> None:
    """Move a cluster's risky state to a safe place, without losing or re-issuing anything.

    \b
      migrate traefik-acme   Traefik's acme.json (one replica on an RWO volume) -> TLS Secrets
                             under cert-manager, and Traefik stateless with 3+ replicas
    """


@migrate.command("traefik-acme")
@target_options
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Traefik's acme.json, copied off its volume (e.g. `kubectl cp NS/POD:/data/acme.json "
    "acme.json`). Read only; the volume keeps its copy.",
)
@click.option("-n", "--namespace", default="traefik", show_default=True, help="Traefik's.")
@click.option("--deployment", default="traefik", show_default=True, help="Traefik's Deployment.")
@click.option(
    "--replicas",
    type=click.IntRange(2, 50),
    default=3,
    show_default=True,
    help="Traefik's replicas once stateless.",
)
@click.option("--yes", is_flag=True, help="Apply without asking (the plan is still shown).")
@click.option(
    "--wait",
    "wait_seconds",
    type=FiniteFloat(min=0, max=3600),
    default=300,
    show_default=True,
    help="Seconds to wait for the rollout when verifying.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    show_default=True,
    help="yaml: only print the manifests the apply would write (Helm: also the values).",
)
def traefik_acme(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    from_file: Path,
    namespace: str,
    deployment: str,
    replicas: int,
    yes: bool,
    wait_seconds: float,
    output: str,
) -> None:
    """Make Traefik stateless: its ACME certificates become TLS Secrets, the same ones.

    Reads acme.json and Traefik's Deployment, shows the plan, then with --yes (or a yes at the
    prompt) writes one kubernetes.io/tls Secret per certificate, cert-manager objects that
    adopt them without re-issuing (an Issuer per resolver with its ACME account, a
    Certificate per Secret), Traefik's default TLSStore, and a Deployment without the claim,
    at --replicas, rolling and spread over Proxmox hosts and nodes. Then it verifies: the
    Secrets hold acme.json's certificates and every replica runs.

    Nothing is deleted: the claim and its acme.json stay, and the Deployment as it was is saved
    for the rollback that is printed. A Traefik installed by Helm gets values, not patches.
    """
    from fireproof.clock import SYSTEM_CLOCK
    from fireproof.migrate import acmejson
    from fireproof.migrate import traefik as migration
    from fireproof.migrate.deployment import helm_values

    stored = acmejson.load(from_file)
    target = load_target(config_path, lab, kubeconfig, context)
    cluster = target.cluster
    plan = migration.make_plan(cluster, stored, namespace, deployment, replicas)
    if output == "yaml":
        _print_yaml(plan.documents(), helm_values(plan.deployment, replicas), plan.helm_release)
        return
    if output == "json":
        emit_json(migration.as_dict(plan))
    steps = migration.describe(plan, time.time())
    confirm_or_abort(steps, yes, "migrate Traefik off acme.json", err=output == "json")
    rollback = _rollback_file(namespace, deployment)
    migration.apply(plan, cluster, rollback, lambda m: progress(terminal_safe(m)))
    problems = migration.verify(plan, cluster, wait_seconds, SYSTEM_CLOCK)
    _rollback_hint(plan.namespace, rollback)
    if problems:
        raise FireproofError(
            "migrated, but not verified: " + "; ".join(problems),
            hint=f"`kubectl -n {namespace} get pods` shows why; the rollback above undoes "
            "the Deployment's change",
        )
    progress(f"verified: {len(plan.certificates)} certificate(s) in Secrets, {replicas} replicas")


def _print_yaml(
    documents: list[dict[str, object]], values: dict[str, object], helm: str | None
) -> None:
    import yaml

    click.echo(yaml.safe_dump_all(documents, sort_keys=False), nl=False)
    if helm:
        click.echo(f"# Helm release {helm}: `helm upgrade --reuse-values -f VALUES` with:")
        click.echo("\n".join(f"# {line}" for line in yaml.safe_dump(values).splitlines()))


def _rollback_file(namespace: str, deployment: str) -> Path:
    from fireproof.wiring import state_home

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return state_home() / "migrations" / f"{namespace}-{deployment}-{stamp}.json"


def _rollback_hint(namespace: str, rollback: Path) -> None:
    progress(f"rollback: kubectl replace --force -f {rollback}  (the Deployment as it was)")
    progress(f"          kubectl -n {namespace} delete tlsstore default  (if it was not there)")
