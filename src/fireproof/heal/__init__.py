"""Playbooks that repair a cluster after a failure: plan (shown first) -> apply -> verify.

Each playbook records every step in a :class:`~fireproof.heal.journal.Journal` (JSON lines and
Kubernetes Events) and returns a timeline.
"""

from fireproof.heal.endpoints import EndpointsPlan, apply_endpoints, plan_endpoints
from fireproof.heal.journal import Journal, StepRecord
from fireproof.heal.node import (
    HealRefused,
    NodePlan,
    RecoverPlan,
    apply_heal,
    apply_recover,
    plan_heal,
    plan_recover,
    prove_identity,
)

__all__ = [
    "EndpointsPlan",
    "HealRefused",
    "Journal",
    "NodePlan",
    "RecoverPlan",
    "StepRecord",
    "apply_endpoints",
    "apply_heal",
    "apply_recover",
    "plan_endpoints",
    "plan_heal",
    "plan_recover",
    "prove_identity",
]
