"""Exit codes of the ``fireproof`` command."""

OK = 0
FAILURE = 1
"""The command could not do what was asked (error printed on stderr)."""
USAGE = 2
"""Bad flags or arguments (click's own convention)."""
FINDINGS = 3
"""`doctor --fail-on`: findings at or above the threshold exist."""
NOT_STARTED = 4
"""`drill run`: a drill could not start (the cluster never reached its steady state)."""
INTERRUPTED = 130
