"""What the cluster-facing commands share: `--config` / `--lab`, the cluster, the inventory.

`--lab` reads the running lab's own ``fireproof.yaml`` (kubeconfig, Proxmox device and token
file, Terraform state): the same file a user writes for a real cluster.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import click

from fireproof.config import Config, ProxmoxDevice, load_config
from fireproof.errors import UsageError
from fireproof.fencing import Fencer, Machine, build_fencer
from fireproof.inventory import Inventory, VmInfo, build_inventory
from fireproof.kube import Cluster

F = TypeVar("F", bound=Callable[..., Any])
CONFIG_ENV = "FIREPROOF_CONFIG"


def _default_config() -> Path | None:
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    for candidate in (
        Path("fireproof.yaml"),
        Path.home() / ".config" / "fireproof" / "fireproof.yaml",
    ):
        if candidate.is_file():
            return candidate
    return None


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


@dataclass
class Target:
    config: Config
    kubeconfig: Path | None
    context: str | None

    @classmethod
    def from_options(
        cls, config_path: Path | None, lab: bool, kubeconfig: Path | None, context: str | None
    ) -> Target:
        if lab and config_path is not None:
            raise click.UsageError("--lab and --config exclude each other")
        path = _lab_config() if lab else (config_path or _default_config())
        config = load_config(path) if path is not None else Config(path=None)
        return cls(
            config=config,
            kubeconfig=kubeconfig or config.cluster.kubeconfig,
            context=context or config.cluster.context,
        )

    @cached_property
    def cluster(self) -> Cluster:
        return Cluster.connect(self.kubeconfig, self.context)

    def fencer(self, device: str) -> Fencer:
        return build_fencer(self.config.device(device), self._read_secret)

    def _read_secret(self, namespace: str, name: str, key: str) -> str:
        return self.cluster.read_secret(namespace, name, key)

    def _list_vms(self, device: str) -> list[VmInfo]:
        spec = self.config.device(device)
        if not isinstance(spec, ProxmoxDevice):
            return []
        from fireproof.fencing.proxmox import ProxmoxFencer

        fencer = ProxmoxFencer(spec, self._read_secret)
        return [VmInfo(name, host, vmid) for name, host, vmid in fencer.list_vms()]

    def inventory(self, nodes: list[str] | None = None) -> Inventory:
        if nodes is None:
            # Read the local sources first: a broken state file is reported as such, not
            # hidden behind an unreachable cluster.
            build_inventory(self.config, [])
        names = nodes if nodes is not None else self.node_names()
        return build_inventory(self.config, names, self._list_vms)

    def node_names(self) -> list[str]:
        return sorted(
            n.metadata.name for n in self.cluster.nodes() if n.metadata and n.metadata.name
        )

    def machine(self, node: str) -> Machine | None:
        return self.mapping(node)[0]

    def mapping(self, node: str) -> tuple[Machine | None, str]:
        """The node's machine and the inventory source that named it (ambiguity raises)."""
        inv = self.inventory([node])
        entry = inv.entry(node)
        return inv.machine(node), entry.source if entry else "none"

    def journal_path(self) -> Path:
        base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
        return base / "fireproof" / "journal.jsonl"
