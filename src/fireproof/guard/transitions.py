"""Which phase may follow which: the remediation's state machine as one table.

``None`` is "no record on the Node". A phase may follow itself only to count a failure (a
fence, a power-on or a re-fence that did not succeed: same phase, a backoff before the next
try). Every write of a record goes through :func:`check`, so a bug cannot skip the fence.
"""

from __future__ import annotations

from collections.abc import Mapping

from fireproof.errors import PermanentError
from fireproof.guard.record import Phase

ALLOWED: Mapping[Phase | None, frozenset[Phase | None]] = {
    None: frozenset({Phase.DETECTED}),
    # Back by itself before the fence: the record goes, guard's cordon is undone.
    Phase.DETECTED: frozenset({Phase.CORDONED, None}),
    Phase.CORDONED: frozenset({Phase.CORDONED, Phase.FENCED, None}),
    # Released only from here; started again before the release: back to the fence.
    Phase.FENCED: frozenset({Phase.RELEASED, Phase.CORDONED}),
    Phase.RELEASED: frozenset({Phase.RELEASED, Phase.REBOOTING, Phase.LEFT_OFF}),
    Phase.REBOOTING: frozenset({Phase.REBOOTING, Phase.RELEASED, Phase.GAVE_UP, None}),
    Phase.LEFT_OFF: frozenset({None}),
    Phase.GAVE_UP: frozenset({None}),
}


class IllegalTransition(PermanentError):
    """A transition the table does not allow: a bug, never acted on."""


def check(old: Phase | None, new: Phase | None) -> None:
    if new not in ALLOWED[old]:
        raise IllegalTransition(f"remediation phase {old or 'none'} cannot go to {new or 'none'}")
