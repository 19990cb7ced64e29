"""The one exception tree of fireproof.

Every error a user can cause or meet derives from :class:`FireproofError` and carries a
one-line message meant for people plus an optional hint; the CLI prints those and never a
traceback. Whether an operation may be retried is decided by type, not by message text:
:class:`TransientError` may succeed on a later try, :class:`PermanentError` never will.
"""

from __future__ import annotations


class FireproofError(Exception):
    """Root of every error fireproof raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class PermanentError(FireproofError):
    """Retrying cannot help: bad input, missing tool, refused credentials."""


class TransientError(FireproofError):
    """May succeed later: a timeout, an unreachable endpoint, a conflict."""


class UsageError(PermanentError):
    """The user asked for something that cannot be done as asked (bad flag value, bad file)."""


class NotFoundError(PermanentError):
    """A named thing (node, lab, VM) does not exist."""
