"""Findings, checks and the doctor's report."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fireproof.kube.snapshot import REFUSED, Snapshot


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"critical": 3, "warning": 2, "info": 1}[self.value]


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    severity: Severity
    message: str
    objects: tuple[str, ...]
    """``kind/namespace/name`` (or ``kind/name``) of everything involved."""
    evidence: tuple[str, ...]
    fix: str


@dataclass(frozen=True, slots=True)
class HypervisorCluster:
    """One Proxmox cluster as its API reports it (``/cluster/status``)."""

    device: str
    name: str | None
    members: Mapping[str, bool]
    """Host -> online."""
    quorate: bool
    qdevice: bool
    ha_hosts: frozenset[str] = frozenset()
    """Hosts running an HA-managed VM: their HA agent arms a watchdog, so HA can fence them."""

    def ha_fences(self, host: str) -> bool:
        """Whether Proxmox HA can fence ``host`` when it dies: it runs an HA service, and the
        others keep quorum without it (three hosts or more, or two with a QDevice)."""
        keeps_quorum = len(self.members) >= 3 or (len(self.members) == 2 and self.qdevice)
        return host in self.members and host in self.ha_hosts and keeps_quorum


@dataclass(frozen=True, slots=True)
class Context:
    """What the checks know beyond the cluster's objects."""

    vip: str | None = None
    fenced_nodes: frozenset[str] | None = None
    """Nodes with a fencing device; None when no fireproof.yaml inventory was given."""
    hosts: Mapping[str, str] = field(default_factory=dict)
    """Node -> the Proxmox host its VM runs on, from the inventory (where it names one)."""
    host_devices: frozenset[str] | None = None
    """Hosts with their own fencing device (``hosts:``); None when no fireproof.yaml was given."""
    hypervisors: tuple[HypervisorCluster, ...] | None = None
    """The Proxmox clusters of fireproof.yaml's devices; None when none could be read."""
    hypervisors_unread: str | None = None
    """Why ``hypervisors`` is None (no device configured, or the API refused)."""
    kubeconfig: Path | None = None
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    stuck_after: dt.timedelta = dt.timedelta(seconds=60)
    """How long a pod may wait (ContainerCreating, Terminating) before it counts as stuck."""


def _refused(reason: str | None) -> bool:
    """Whether a "not checked" reason is the API server refusing a read (401 or 403)."""
    return any(word in (reason or "") for word in REFUSED)


class NotChecked(Exception):
    """Raised by a check that cannot judge with what the cluster shows; the message says why."""


CheckFn = Callable[[Snapshot, Context], list[Finding]]


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    name: str
    severity: Severity
    family: str
    needs: tuple[str, ...]
    """Snapshot kinds the check reads; if one is missing the check is "not checked"."""
    run: CheckFn
    explain: str
    """What it looks for and why (`doctor --explain ID`)."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: Check
    findings: tuple[Finding, ...]
    not_checked: str | None = None

    @property
    def status(self) -> str:
        if self.not_checked:
            return "not-checked"
        return "failed" if self.findings else "passed"


@dataclass(frozen=True, slots=True)
class Report:
    results: tuple[CheckResult, ...]
    requests: int
    cluster: str
    taken_at: dt.datetime

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    @property
    def ran(self) -> int:
        return sum(1 for r in self.results if not r.not_checked)

    @property
    def blind(self) -> bool:
        """Nothing could be checked, because the API refused (401/403) every read needed."""
        skipped = [r for r in self.results if r.not_checked]
        return self.ran == 0 and bool(skipped) and all(_refused(r.not_checked) for r in skipped)

    @property
    def verdict(self) -> str:
        """``not checked`` when no check ran; ``findings``; ``partial`` when nothing was found
        but the API refused some reads; else ``healthy``."""
        if self.ran == 0:
            return "not checked"
        if self.findings:
            return "findings"
        # A check skipped because the cluster does not serve its kind (no Longhorn CRDs) does
        # not spoil "healthy"; one skipped because the API refused the read does.
        refused = any(_refused(r.not_checked) for r in self.results)
        return "partial" if refused else "healthy"

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": "fireproof.dev/v1",
            "kind": "DoctorReport",
            "cluster": self.cluster,
            "takenAt": self.taken_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "apiRequests": self.requests,
            "summary": {
                "critical": self.count(Severity.CRITICAL),
                "warning": self.count(Severity.WARNING),
                "info": self.count(Severity.INFO),
                "checks": len(self.results),
                "ran": self.ran,
                "notChecked": sum(1 for r in self.results if r.not_checked),
                "verdict": self.verdict,
            },
            "checks": [
                {
                    "id": r.check.id,
                    "name": r.check.name,
                    "severity": str(r.check.severity),
                    "status": r.status,
                    **({"reason": r.not_checked} if r.not_checked else {}),
                    "findings": [
                        {
                            "severity": str(f.severity),
                            "message": f.message,
                            "objects": list(f.objects),
                            "evidence": list(f.evidence),
                            "fix": f.fix,
                        }
                        for f in r.findings
                    ],
                }
                for r in self.results
            ],
        }
