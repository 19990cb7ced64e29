"""Config -> cluster -> inventory -> fencer: what every command and the guard wire up alike.

Below the CLI so the guard (and later drills) build the same objects; errors are fireproof's,
never click's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from fireproof.config import CONFIG_ENV, Config, ProxmoxDevice, load_config
from fireproof.fencing import Fencer, Machine, build_fencer
from fireproof.inventory import Inventory, VmInfo, build_inventory
from fireproof.kube import Cluster


def default_config_path() -> Path | None:
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    for candidate in (
        Path("fireproof.yaml"),
        Path.home() / ".config" / "fireproof" / "fireproof.yaml",
    ):
        if candidate.is_file():
            return candidate
    return None


def state_home() -> Path:
    """fireproof's own state: journals, migrations' rollbacks ($XDG_STATE_HOME/fireproof)."""
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "fireproof"


def journal_path() -> Path:
    return state_home() / "journal.jsonl"


@dataclass
class Target:
    """A cluster to act on, with its config; the cluster is connected on first use."""

    config: Config
    kubeconfig: Path | None
    context: str | None
    _fencers: dict[str, Fencer] = field(default_factory=dict, init=False, repr=False)
    """One driver per device: one login, reused by discovery, fencing and guard's polls."""

    @classmethod
    def load(
        cls, config_path: Path | None, kubeconfig: Path | None = None, context: str | None = None
    ) -> Target:
        path = config_path or default_config_path()
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
        """The device's driver, secrets resolved on first use (before any write to the
        cluster)."""
        if device not in self._fencers:
            self._fencers[device] = build_fencer(self.config.device(device), self._read_secret)
        return self._fencers[device]

    def _read_secret(self, namespace: str, name: str, key: str) -> str:
        return self.cluster.read_secret(namespace, name, key)

    def _list_vms(self, device: str) -> list[VmInfo]:
        spec = self.config.device(device)
        if not isinstance(spec, ProxmoxDevice):
            return []
        from fireproof.fencing.proxmox import ProxmoxFencer  # proxmoxer only when used

        fencer = self.fencer(device)
        assert isinstance(fencer, ProxmoxFencer)  # noqa: S101 - the registry maps the type
        return [VmInfo(name, host, vmid) for name, host, vmid in fencer.list_vms()]

    def inventory(self, nodes: list[str] | None = None) -> Inventory:
        if nodes is None:
            # Read the local sources first: a broken state file is reported as such, not
            # hidden behind an unreachable cluster.
            build_inventory(self.config, [])
        names = nodes if nodes is not None else self.node_names()
        provider_ids = self._provider_ids() if self.config.inventory.discover else None
        return build_inventory(self.config, names, self._list_vms, provider_ids)

    def _provider_ids(self) -> dict[str, str]:
        """Each node's ``spec.providerID`` (a Proxmox CCM's ``proxmox://REGION/VMID``)."""
        return {
            n.metadata.name: n.spec.providerID
            for n in self.cluster.nodes()
            if n.metadata and n.metadata.name and n.spec and n.spec.providerID
        }

    def node_names(self) -> list[str]:
        return sorted(
            n.metadata.name for n in self.cluster.nodes() if n.metadata and n.metadata.name
        )

    def mapping(self, node: str) -> tuple[Machine | None, str]:
        """The node's machine and the inventory source that named it (ambiguity raises)."""
        inv = self.inventory([node])
        entry = inv.entry(node)
        return inv.machine(node), entry.source if entry else "none"

    def journal_path(self) -> Path:
        return journal_path()
