"""What the cluster-facing commands share: `--config` / `--lab`, the cluster, the inventory.

`--lab` reads the running lab's own ``fireproof.yaml`` (kubeconfig, Proxmox device and token
file, Terraform state): the same file a user writes for a real cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fireproof.config import CONFIG_ENV
from fireproof.errors import UsageError

if TYPE_CHECKING:  # the clients load when a command runs, not for its --help
    from fireproof.wiring import Target

F = TypeVar("F", bound=Callable[..., Any])
__all__ = ["load_target", "target_options"]


def _lab_config() -> Path:
    from fireproof.lab.state import LabPaths, default_state_dir  # the CLI may know the lab

    path = LabPaths(default_state_dir()).config
    if not path.is_file():
        raise UsageError(
            f"no running lab at {path.parent}",
            hint="start one with `fireproof lab up` (or set FIREPROOF_LAB_DIR)",
        )
    return path


def target_options(fn: F) -> F:
    """`--config`, `--lab`, `--kubeconfig`, `--context` for every cluster-facing command."""
    fn = click.option(
        "--context", default=None, help="kubeconfig context (default: the current one)."
    )(fn)
    fn = click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="kubeconfig file (default: fireproof.yaml's, then $KUBECONFIG, ~/.kube/config).",
    )(fn)
    fn = click.option(
        "--lab",
        is_flag=True,
        help="Act on the running lab ($FIREPROOF_LAB_DIR or the default lab dir).",
    )(fn)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"fireproof.yaml (default: ${CONFIG_ENV}, ./fireproof.yaml, "
        "~/.config/fireproof/fireproof.yaml).",
    )(fn)


def load_target(
    config_path: Path | None, lab: bool, kubeconfig: Path | None, context: str | None
) -> Target:
    """The target of a cluster-facing command from its options."""
    from fireproof.wiring import Target

    if lab and config_path is not None:
        raise click.UsageError("--lab and --config exclude each other")
    return Target.load(_lab_config() if lab else config_path, kubeconfig, context)
