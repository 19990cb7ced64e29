"""Exit codes of the ``fireproof`` command."""

OK = 0
FAILURE = 1
"""The command could not do what was asked (error printed on stderr)."""
USAGE = 2
"""Bad flags or arguments (click's own convention)."""
FINDINGS = 3
"""`doctor --fail-on`: findings at or above the threshold exist."""
INTERRUPTED = 130
