"""Fire drills: a fault, the recovery watched on one clock, SLO verdicts, a run document.

The names load on first use (PEP 562): reading a spec (``fireproof.drill.spec``) must not load
the runner and its Kubernetes client, so a bad spec is reported at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fireproof.drill.plan import DrillPlan, DrillRefused, LabHooks, plan_drill
    from fireproof.drill.run import DrillFailed, DrillRunner
    from fireproof.drill.spec import DrillSpec, SpecError, load_spec

_WHERE = {
    "DrillPlan": "plan",
    "DrillRefused": "plan",
    "LabHooks": "plan",
    "plan_drill": "plan",
    "DrillFailed": "run",
    "DrillRunner": "run",
    "DrillSpec": "spec",
    "SpecError": "spec",
    "load_spec": "spec",
}

__all__ = [
    "DrillFailed",
    "DrillPlan",
    "DrillRefused",
    "DrillRunner",
    "DrillSpec",
    "LabHooks",
    "SpecError",
    "load_spec",
    "plan_drill",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'fireproof.drill' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fireproof.drill.{_WHERE[name]}"), name)
