"""--dry-run: say once what guard would do, from the very policy the real loop runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fireproof.guard.notices import Notices
from fireproof.guard.observe import Observation
from fireproof.guard.policy import Action, PolicySettings, Refuse, plan_for

STEPS = {
    Action.CORDON: "cordon",
    Action.FENCE: "power off and verify",
    Action.RELEASE: "release its volumes",
    Action.POWER_ON: "then power it on again, wait Ready, untaint, uncordon",
    Action.LEAVE_OFF: "then leave it off and tainted",
}


@dataclass
class DryRunReport:
    settings: PolicySettings
    notices: Notices
    say: Callable[[str], None]

    def show(self, observation: Observation) -> None:
        for name, view in sorted(observation.nodes.items()):
            reason = observation.suspects.get(name)
            if view.record is not None:
                message = f"{name}: remediation in phase {view.record.phase}"
                self.notices.once(name, f"rec-{view.record.phase}", self.say, message)
                continue
            if reason is None:
                self.notices.clear(name)
                continue
            actions, stop = plan_for(observation, view, self.settings, observation.wall)
            if isinstance(stop, Refuse):
                message = f"{name} looks dead ({reason}); {stop.gate}: would do nothing"
                self.notices.once(name, f"refuse-{stop.gate}", self.say, message)
            elif actions:
                steps = ", ".join(STEPS[a] for a in actions if a in STEPS)
                self.notices.once(
                    name,
                    f"would-{reason}",
                    self.say,
                    f"{name} looks dead ({reason}): would {steps}",
                )
