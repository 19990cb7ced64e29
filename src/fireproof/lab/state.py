"""Where a lab keeps its files, and the record of what it started.

``lab.json`` is written by ``lab up`` and read by every other lab command; it names the ports,
the processes (pid plus kernel start time, so a recycled pid is never mistaken for ours) and
the settings the lab was started with.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fireproof.errors import NotFoundError, UsageError

if TYPE_CHECKING:  # cryptography loads only when the PKI is used, not for every lab command
    from fireproof.lab.acme import AcmeServer
    from fireproof.lab.pki import LabPKI

STATE_VERSION = 1


def default_state_dir() -> Path:
    """``$FIREPROOF_LAB_DIR``, else ``$XDG_STATE_HOME/fireproof/lab``, else ~/.local/state."""
    if env := os.environ.get("FIREPROOF_LAB_DIR"):
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fireproof" / "lab"


@dataclass(frozen=True, slots=True)
class LabPaths:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def internal(self) -> Path:
        """Kubeconfigs of the lab's own components."""
        return self.root / "internal"

    @property
    def agent_token(self) -> Path:
        return self.internal / "agent.token"

    @property
    def proxmox(self) -> Path:
        """Credentials of the Proxmox emulator (0600)."""
        return self.root / "proxmox.yaml"

    @property
    def bmc(self) -> Path:
        """Addresses and credentials of each Proxmox host's BMC (0600)."""
        return self.root / "bmc.yaml"

    @property
    def config(self) -> Path:
        """``fireproof.yaml`` for `--lab`."""
        return self.root / "fireproof.yaml"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.yaml"

    @property
    def terraform_state(self) -> Path:
        return self.root / "terraform.tfstate"

    @property
    def pki(self) -> LabPKI:
        from fireproof.lab.pki import LabPKI

        return LabPKI(self.root / "pki")

    @property
    def audit_policy(self) -> Path:
        return self.internal / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines): who released what, and when."""
        return self.logs / "audit.jsonl"

    @property
    def power_log(self) -> Path:
        """The Proxmox emulator's power history (JSON lines)."""
        return self.logs / "power.jsonl"

    @property
    def ledger(self) -> Path:
        """The volume write ledger (JSON lines), written by the simulated kubelets."""
        return self.root / "ledger.jsonl"

    @property
    def guard_values(self) -> Path:
        """Values for `helm install` of fireproof's chart into the lab."""
        return self.root / "guard-values.yaml"

    @property
    def pods(self) -> Path:
        """Files of the pods the lab runs as real processes (volumes, logs), one dir each."""
        return self.root / "pods"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def component_kubeconfig(self, component: str) -> Path:
        return self.internal / f"{component}.kubeconfig"


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int
    """Kernel start time of the process (/proc/PID/stat field 22): tells a recycled pid apart."""


@dataclass(frozen=True, slots=True)
class LabState:
    profile: str
    topology: str
    workers: int | None
    kubernetes_version: str
    bin_dir: str
    ports: dict[str, int]
    processes: tuple[ProcessRecord, ...]
    started_at: float
    version: int = STATE_VERSION
    extra: dict[str, str] = field(default_factory=dict)
    hosts: int | None = None
    """Proxmox hosts (`lab up --hosts`); None: the topology's own."""
    replaced_binaries: dict[str, str] = field(default_factory=dict)
    """Components of an older release (`lab up --kubernetes`) that run instead of ours."""
    acme_ports: dict[str, int] = field(default_factory=dict)
    """The ACME server's and the ingress's ports (``fireproof.lab.acme.AcmePorts``)."""

    @property
    def api_server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def agent_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['agent']}"

    def acme(self, paths: LabPaths) -> AcmeServer:
        """The lab's ACME server (Pebble), as `lab up` configured it."""
        from fireproof.lab.acme import AcmePorts, AcmeServer

        return AcmeServer(paths.root / "acme", paths.pki, AcmePorts(**self.acme_ports))

    def save(self, paths: LabPaths) -> None:
        tmp = paths.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(paths.state_file)

    @classmethod
    def load(cls, paths: LabPaths) -> LabState:
        try:
            raw = json.loads(paths.state_file.read_text())
        except FileNotFoundError:
            raise NotFoundError(
                f"no lab in {paths.root}",
                hint="start one with `fireproof lab up` (or pass the right --state-dir)",
            ) from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"lab state {paths.state_file} is unreadable: {exc}") from None
        try:
            if raw.get("version") != STATE_VERSION:
                raise UsageError(
                    f"lab state {paths.state_file} has version {raw.get('version')!r}, "
                    f"expected {STATE_VERSION}",
                    hint="stop it with the fireproof version that started it",
                )
            raw["processes"] = tuple(ProcessRecord(**p) for p in raw["processes"])
            return cls(**raw)
        except (KeyError, TypeError) as exc:
            raise UsageError(f"lab state {paths.state_file} is malformed: {exc}") from None
