"""The ``fireproof`` command."""

from __future__ import annotations

import importlib
import os
import signal
import sys

import click

from fireproof import _interrupted_while_starting
from fireproof.cli import exitcodes
from fireproof.errors import FireproofError

COMMANDS: dict[str, tuple[str, str, str]] = {
    "lab": (
        "fireproof.cli.lab",
        "lab",
        "A local replica cluster: real control plane, simulated machines.",
    ),
    "doctor": (
        "fireproof.cli.doctor",
        "doctor",
        "Diagnose the incident's patterns (stale API endpoints, dead nodes, stuck volumes) and "
        "the architecture risks behind them, with evidence and the exact fix.",
    ),
    "inventory": (
        "fireproof.cli.fence",
        "inventory",
        "Which machine runs each node, and which device fences it.",
    ),
    "fence": (
        "fireproof.cli.fence",
        "fence",
        "Read or set a node's power through its fencing device (hypervisor or BMC).",
    ),
    "heal": (
        "fireproof.cli.heal",
        "heal",
        "Repair what a failure left behind, safely: plan, confirm, apply, verify.",
    ),
    "guard": (
        "fireproof.cli.guard",
        "guard",
        "Recover dead and partitioned nodes with no human at the keyboard.",
    ),
    "drill": (
        "fireproof.cli.drill",
        "drill",
        "Fire drills: power a node off (or partition it), watch the recovery, judge the SLOs.",
    ),
    "migrate": (
        "fireproof.cli.migrate",
        "migrate",
        "Move a cluster's risky state to a safe place, without losing or re-issuing anything.",
    ),
    "completion": (
        "fireproof.cli.completion",
        "completion",
        "Print the shell completion script for SHELL.",
    ),
}
"""name -> (module, attribute, short help). A command's module (and the client libraries it
needs) loads only when that command runs: `fireproof --help` and `--version` load none. A
test keeps each short help equal to its command's own."""


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        command: click.Command = getattr(importlib.import_module(spec[0]), spec[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, _shorten(summary, limit)) for name, (_m, _a, summary) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 3, 0)].rsplit(" ", 1)[0] + "..."


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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


def kubectl_main() -> None:
    """``kubectl-fireproof``: kubectl runs it for ``kubectl fireproof …`` (a kubectl plugin)."""
    main(prog_name="kubectl fireproof")


def main(prog_name: str | None = None) -> None:
    try:
        # From here on Ctrl-C is a KeyboardInterrupt that the commands handle (restore, etc.).
        if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        cli.main(prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort as exc:
        # click turns a Ctrl-C inside a command's import or a prompt into Abort.
        said = "interrupted" if isinstance(exc.__cause__, KeyboardInterrupt) else "aborted"
        click.echo(said, err=True)
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
