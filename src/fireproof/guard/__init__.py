"""guard: the always-on form of `heal`. It watches the hypervisors and the node Leases, fences
a dead or partitioned node (verified off), releases its volumes at once, and brings it back,
with one leader acting at a time and each phase recorded on the Node.

A pipeline: :mod:`observe` (a frozen look), :mod:`policy` (the pure ``decide``),
:mod:`transitions` (the phase table), :mod:`actuator` (heal's steps behind the fencing token),
and :mod:`controller` (the loop).
"""

from fireproof.guard.controller import Guard
from fireproof.guard.detect import NodeView, healthy, quorum_allows_fencing, suspicion
from fireproof.guard.leader import LeaderElector, NotLeading
from fireproof.guard.logs import setup_logging
from fireproof.guard.metrics import FAILING_LOOKS_NOT_READY, GuardMetrics, parse_address, serve
from fireproof.guard.observe import Observation, Windows, observe
from fireproof.guard.policy import (
    Act,
    Action,
    Decision,
    Forget,
    Gate,
    PolicySettings,
    Refuse,
    Wait,
    decide,
    plan_for,
)
from fireproof.guard.record import (
    ANNOTATION,
    EXCLUDE_LABEL,
    PAUSE_ANNOTATION,
    Phase,
    Reason,
    Remediation,
)
from fireproof.guard.transitions import ALLOWED, IllegalTransition

__all__ = [
    "ALLOWED",
    "ANNOTATION",
    "EXCLUDE_LABEL",
    "FAILING_LOOKS_NOT_READY",
    "PAUSE_ANNOTATION",
    "Act",
    "Action",
    "Decision",
    "Forget",
    "Gate",
    "Guard",
    "GuardMetrics",
    "IllegalTransition",
    "LeaderElector",
    "NodeView",
    "NotLeading",
    "Observation",
    "Phase",
    "PolicySettings",
    "Reason",
    "Refuse",
    "Remediation",
    "Wait",
    "Windows",
    "decide",
    "healthy",
    "observe",
    "parse_address",
    "plan_for",
    "quorum_allows_fencing",
    "serve",
    "setup_logging",
    "suspicion",
]
