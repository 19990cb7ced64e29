"""Fire drills: a fault, the recovery watched on one clock, SLO verdicts, a run document."""

from fireproof.drill.plan import DrillPlan, DrillRefused, LabHooks, plan_drill
from fireproof.drill.run import DrillFailed, DrillRunner
from fireproof.drill.spec import DrillSpec, SpecError, load_spec

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
