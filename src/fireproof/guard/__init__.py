"""guard: the always-on form of `heal`. It watches the hypervisors and the node Leases, fences
a dead or partitioned node (verified off), releases its volumes at once, and brings it back,
with one leader acting at a time and each phase recorded on the Node."""

from fireproof.guard.controller import Guard
from fireproof.guard.detect import NodeView, healthy, quorum_allows_fencing, suspicion
from fireproof.guard.leader import LeaderElector, NotLeading
from fireproof.guard.logs import setup_logging
from fireproof.guard.metrics import GuardMetrics, parse_address, serve
from fireproof.guard.record import (
    ANNOTATION,
    EXCLUDE_LABEL,
    PAUSE_ANNOTATION,
    Phase,
    Reason,
    Remediation,
)

__all__ = [
    "ANNOTATION",
    "EXCLUDE_LABEL",
    "PAUSE_ANNOTATION",
    "Guard",
    "GuardMetrics",
    "LeaderElector",
    "NodeView",
    "NotLeading",
    "Phase",
    "Reason",
    "Remediation",
    "healthy",
    "parse_address",
    "quorum_allows_fencing",
    "serve",
    "setup_logging",
    "suspicion",
]
