"""Standing conditions said once, not on every look: "storm", "cannot poll device X", ..."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

EventWriter = Callable[[str, str, str], None]
"""(node, reason, message): a Warning Event on the node."""


@dataclass
class Notices:
    event: EventWriter | None = None
    _said: set[tuple[str, str]] = field(default_factory=set)

    def once(
        self,
        subject: str,
        key: str,
        emit: Callable[[str], None],
        message: str,
        *,
        event: str | None = None,
    ) -> None:
        """Say ``message`` the first time (subject, key) holds; again only after a clear."""
        if (subject, key) in self._said:
            return
        self._said.add((subject, key))
        emit(message)
        if event and subject != "*" and self.event is not None:
            self.event(subject, event, message)

    def clear(self, subject: str, key: str | None = None) -> None:
        """The condition ended (key None: every condition of the subject)."""
        self._said = {
            k for k in self._said if not (k[0] == subject and (key is None or k[1] == key))
        }

    def clear_key(self, key: str) -> None:
        self._said = {k for k in self._said if k[1] != key}
