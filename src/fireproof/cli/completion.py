"""Shell completion: ``fireproof completion bash|zsh|fish`` prints click's own script, and node
arguments complete from the cluster the command would act on.

Completing must never print an error or hang the shell: every failure (no lab, an unreachable
API server, a bad config) completes nothing, and a cluster is asked with a short timeout.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
ASK_TIMEOUT = 3.0
"""Seconds a completion waits for the API server: a shell user waits on it."""


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
      bash:  fireproof completion bash > ~/.local/share/bash-completion/completions/fireproof
      zsh:   fireproof completion zsh > "${fpath[1]}/_fireproof"
      fish:  fireproof completion fish > ~/.config/fish/completions/fireproof.fish

    Commands, options and choices complete; NODE arguments complete from the cluster the
    command acts on (the lab's nodes for `lab` commands and --lab, else the API server of
    --config / --kubeconfig, asked with a 3 s timeout).
    """
    root = ctx.find_root()
    name = root.info_name or "fireproof"
    var = f"_{name.replace('-', '_').replace(' ', '_').upper()}_COMPLETE"
    shell_class = get_completion_class(shell)
    if shell_class is None:  # pragma: no cover - the Choice admits only known shells
        raise click.UsageError(f"no completion for {shell}")
    click.echo(shell_class(root.command, {}, name, var).source())


def node_names(ctx: click.Context) -> list[str]:
    """The node names the command in ``ctx`` would act on; empty when they cannot be known."""
    params = _params(ctx)
    with contextlib.suppress(Exception):  # completion stays silent: nothing to offer
        if "state_dir" in params:
            return _lab_nodes(Path(params["state_dir"]))
        return _cluster_nodes(params)
    return []


def _params(ctx: click.Context) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    current: click.Context | None = ctx
    while current is not None:
        for key, value in current.params.items():
            merged.setdefault(key, value)
        current = current.parent
    return merged


def _lab_nodes(state_dir: Path) -> list[str]:
    # From the lab's own record, not its API: `lab power-on` must complete while the API is
    # down (a lost etcd quorum), and reading a file is instant.
    from fireproof.lab.state import LabPaths, LabState
    from fireproof.lab.topology import build_topology

    state = LabState.load(LabPaths(state_dir.expanduser().resolve()))
    return [n.name for n in build_topology(state.topology, state.workers, state.hosts).nodes]


def _cluster_nodes(params: dict[str, Any]) -> list[str]:
    from fireproof.cli.context import load_target
    from fireproof.kube import Cluster, load_kubeconfig, sync_client

    target = load_target(
        params.get("config_path"),
        bool(params.get("lab")),
        params.get("kubeconfig"),
        params.get("context"),
    )
    config = load_kubeconfig(target.kubeconfig, target.context)
    cluster = Cluster(sync_client(config, timeout=ASK_TIMEOUT), str(config.cluster.server))
    return sorted(n.metadata.name for n in cluster.nodes() if n.metadata and n.metadata.name)
