"""``fireproof lab``: the local replica cluster."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import click

from fireproof.cli.render import emit_json, progress, table
from fireproof.lab import binaries
from fireproof.lab.lab import Lab, UpOptions
from fireproof.lab.profiles import PROFILES
from fireproof.lab.state import default_state_dir
from fireproof.lab.topology import MAX_WORKERS, TOPOLOGIES

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_state_dir,
    show_default="$FIREPROOF_LAB_DIR or ~/.local/state/fireproof/lab",
    help="Directory holding the lab's kubeconfig, certificates, logs and state.",
)
bin_dir_option = click.option(
    "--bin-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Use prebuilt control-plane binaries from DIR (also ${binaries.BIN_DIR_ENV}).",
)


@click.group()
def lab() -> None:
    """A local replica cluster: real control plane, simulated machines.

    The control plane is upstream etcd, kube-apiserver, kube-controller-manager and
    kube-scheduler on 127.0.0.1; kubelets are simulated by one process, so a machine can be
    powered off and its node falls silent exactly like a dead VM.
    """


@lab.command()
@click.option("--rebuild", is_flag=True, help="Build again even if a verified set is cached.")
def build(rebuild: bool) -> None:
    """Build the pinned Kubernetes control plane from the Go module proxy (once).

    Binaries go to a cache outside the repository and are reused until the pin changes.
    """
    bins, built = binaries.build(rebuild=rebuild, progress=progress)
    if not built:
        progress(f"Kubernetes {bins.version} binaries already built")
    click.echo(str(bins.directory))


@lab.command()
@state_dir_option
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="fast",
    show_default=True,
    help="fast: seconds-scale heartbeats and evictions; real: upstream defaults.",
)
@click.option(
    "--topology",
    type=click.Choice(sorted(TOPOLOGIES)),
    default="minimal",
    show_default=True,
    help="Cluster shape: minimal (1 CP + 3 workers) or tazlab.",
)
@click.option(
    "--workers",
    type=click.IntRange(0, MAX_WORKERS),
    default=None,
    help="Override the topology's number of worker nodes.",
)
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="kube-apiserver port on 127.0.0.1 (default: a free port).",
)
@bin_dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=180.0,
    show_default=True,
    help="Seconds to wait for each component to become ready.",
)
def up(
    state_dir: Path,
    profile: str,
    topology: str,
    workers: int | None,
    api_port: int | None,
    bin_dir: Path | None,
    timeout: float,
) -> None:
    """Start the lab and wait until every node is Ready."""
    the_lab = Lab(state_dir)
    options = UpOptions(
        profile=profile,
        topology=topology,
        workers=workers,
        api_port=api_port,
        bin_dir=bin_dir,
        ready_timeout=timeout,
    )
    state, started = the_lab.up(options, progress)
    if not started:
        click.echo(
            f"a lab is already running in {the_lab.paths.root} "
            f"(profile {state.profile}, topology {state.topology}); nothing started"
        )
    else:
        click.echo(
            f"lab is up: Kubernetes {state.kubernetes_version}, profile {state.profile}, "
            f"topology {state.topology}"
        )
    click.echo(f"  export KUBECONFIG={the_lab.paths.kubeconfig}")
    click.echo(f"  logs: {the_lab.paths.logs}/")


@lab.command()
@state_dir_option
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def status(state_dir: Path, output: str) -> None:
    """Show the lab's components and nodes."""
    st = Lab(state_dir).status()
    if output == "json":
        emit_json(
            {
                "state_dir": str(st.state_dir),
                "healthy": st.healthy,
                "problems": list(st.problems),
                "kubernetes_version": st.state.kubernetes_version,
                "profile": st.state.profile,
                "topology": st.state.topology,
                "api_server": st.state.api_server,
                "components": [dataclasses.asdict(c) for c in st.components],
                "nodes": [dataclasses.asdict(n) for n in st.nodes],
            }
        )
    else:
        click.echo(
            f"lab in {st.state_dir}: Kubernetes {st.state.kubernetes_version}, "
            f"profile {st.state.profile}, topology {st.state.topology}"
        )
        click.echo()
        click.echo(
            table(
                ["COMPONENT", "PID", "STATE", "ENDPOINT"],
                [
                    (c.name, c.pid, "running" if c.running else "STOPPED", c.endpoint)
                    for c in st.components
                ],
            )
        )
        click.echo()
        click.echo(
            table(
                ["NODE", "STATUS", "ROLES", "POWER", "KUBELET", "INTERNAL-IP", "TAINTS"],
                [
                    (
                        n.name,
                        n.ready,
                        n.roles,
                        n.power,
                        n.kubelet,
                        n.address,
                        ",".join(n.taints) or "<none>",
                    )
                    for n in st.nodes
                ],
            )
        )
        for problem in st.problems:
            click.echo(f"problem: {problem}", err=True)
    if not st.healthy:
        sys.exit(1)


@lab.command()
@state_dir_option
def down(state_dir: Path) -> None:
    """Stop every process the lab started."""
    stopped = Lab(state_dir).down(progress)
    click.echo(f"lab stopped ({len(stopped)} processes)")


@lab.command("power-off")
@state_dir_option
@click.argument("node")
def power_off(state_dir: Path, node: str) -> None:
    """Cut a machine's power: its node falls silent at once (no Lease, status or pod updates)."""
    view = Lab(state_dir).power(node, on=False)
    click.echo(f"{view['name']}: power {view['power']}")


@lab.command("power-on")
@state_dir_option
@click.argument("node")
def power_on(state_dir: Path, node: str) -> None:
    """Power a machine on: its kubelet boots, re-registers and cleans up its pods."""
    view = Lab(state_dir).power(node, on=True)
    click.echo(f"{view['name']}: power {view['power']}")


@lab.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@state_dir_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(state_dir: Path, args: tuple[str, ...]) -> None:
    """Run the lab's own kubectl (same version as the server) against the lab.

    Example: fireproof lab kubectl -- get pods -A
    """
    the_lab = Lab(state_dir)
    state = the_lab.load_state()
    exe = Path(state.bin_dir) / "kubectl"
    env = dict(os.environ, KUBECONFIG=str(the_lab.paths.kubeconfig))
    sys.exit(subprocess.run([str(exe), *args], env=env).returncode)
