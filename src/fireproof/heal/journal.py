"""What a playbook did and when: a timeline, JSON lines on disk, Events in the cluster."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fireproof.clock import SYSTEM_CLOCK, Clock, rfc3339
from fireproof.errors import FireproofError
from fireproof.kube import Cluster


@dataclass(frozen=True, slots=True)
class StepRecord:
    step: str
    status: str
    """``ok``, ``failed`` or ``skipped``."""
    message: str
    seconds: float
    """Since the playbook started."""
    at: str


@dataclass
class Journal:
    playbook: str
    node: str | None
    cluster: Cluster | None = None
    log_path: Path | None = None
    subject: tuple[str, str | None, str] | None = None
    """(kind, namespace, name) Events are recorded on; default: the node."""
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False)
    started: float = -1.0
    """The clock's monotonic time when the playbook started (now, unless given)."""
    steps: list[StepRecord] = field(default_factory=list)
    warn: Callable[[str], None] | None = None
    """Told once when Events cannot be created (the journal on disk stays the record)."""
    _events_failed: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock.monotonic()

    def record(
        self, step: str, message: str, *, status: str = "ok", event: str | None = None
    ) -> None:
        record = StepRecord(
            step=step,
            status=status,
            message=message,
            seconds=round(self.clock.monotonic() - self.started, 1),
            at=rfc3339(self.clock),
        )
        self.steps.append(record)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            line = {"playbook": self.playbook, "node": self.node, **asdict(record)}
            with self.log_path.open("a") as log:
                log.write(json.dumps(line) + "\n")
        subject = self.subject or (("Node", None, self.node) if self.node else None)
        if event and self.cluster is not None and subject is not None:
            kind, namespace, name = subject
            # An Event is a courtesy; the journal on disk is the record.
            try:
                self.cluster.record_event(
                    name,
                    event,
                    f"fireproof {self.playbook}: {message}",
                    warning=status == "failed",
                    kind=kind,
                    namespace=namespace,
                )
            except FireproofError as exc:
                if not self._events_failed and self.warn is not None:
                    self.warn(
                        f"warning: cannot create Events ({exc.message}); the journal "
                        f"{self.log_path or '(none)'} is the only record of this run"
                    )
                self._events_failed = True

    def done(self, step: str) -> bool:
        """Whether the step happened: done now (ok) or found done already (skipped)."""
        return any(s.step == step and s.status in ("ok", "skipped") for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "node": self.node,
            "ok": all(s.status != "failed" for s in self.steps),
            "seconds": round(self.clock.monotonic() - self.started, 1),
            "steps": [asdict(s) for s in self.steps],
        }
