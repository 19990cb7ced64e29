"""The ``fireproof`` command."""

from __future__ import annotations

import os
import sys

import click

from fireproof.cli import exitcodes
from fireproof.errors import FireproofError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="fireproof")
def cli() -> None:
    """Make bare-metal and home-lab Kubernetes clusters survive hardware failure.

    Start with the lab, a local replica of a Talos-on-Proxmox cluster with a real control plane:

    \b
      fireproof lab build     build the upstream control-plane binaries (once)
      fireproof lab up        start the lab and print its kubeconfig

    Then act on it (or on any cluster with --config / --kubeconfig):

    \b
      fireproof doctor --lab              find the incident's patterns and the risks behind them
      fireproof inventory show --lab      node -> VM -> fencing device
      fireproof heal node NODE --lab      fence a dead node and release its volumes
      fireproof heal api-endpoints --lab  repair a stale `kubernetes` Endpoints
      fireproof guard run --lab           recover dead nodes by itself (try --dry-run first)
      fireproof drill run SPEC --lab      a fire drill: fault, recovery timeline, SLO verdicts
    """


def _add_commands() -> None:
    # Imported here, inside main()'s handlers: a Ctrl-C while the command modules load is an
    # "interrupted", never a traceback.
    from fireproof.cli.doctor import doctor
    from fireproof.cli.drill import drill
    from fireproof.cli.fence import fence, inventory
    from fireproof.cli.guard import guard
    from fireproof.cli.heal import heal
    from fireproof.cli.lab import lab

    for command in (lab, doctor, inventory, fence, heal, guard, drill):
        cli.add_command(command)


def main() -> None:
    try:
        _add_commands()
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(exitcodes.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except FireproofError as exc:
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exitcodes.FAILURE)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(exitcodes.INTERRUPTED)
    except Exception as exc:
        # A bug, not a user mistake: one line by default, the traceback on request.
        if os.environ.get("FIREPROOF_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("hint: rerun with FIREPROOF_DEBUG=1 for the traceback, and report it", err=True)
        sys.exit(exitcodes.FAILURE)
    sys.exit(exitcodes.OK)
