"""One clock for every window and wait: monotonic time for intervals, wall time for records.

guard, heal's steps, the fencing waits and the drill take a :class:`Clock` instead of calling
``time`` themselves, so a test drives the storm cooldown, the confirm window or a verify
timeout in microseconds with a :class:`ManualClock`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (intervals, deadlines)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (records other processes read)."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The machine's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


SYSTEM_CLOCK: Clock = SystemClock()


def utc_now(clock: Clock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.time(), dt.UTC)


def rfc3339(clock: Clock) -> str:
    return utc_now(clock).strftime("%Y-%m-%dT%H:%M:%SZ")


def poll_until(
    probe: Callable[[], T | None], *, timeout: float, interval: float, clock: Clock
) -> T | None:
    """Call ``probe`` until it returns something truthy (returned) or ``timeout`` has passed
    (None: the caller raises its own error). The one poll-until-deadline of fireproof: fencing
    verification, heal's waits and guard's settle on the same clock."""
    deadline = clock.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if clock.monotonic() >= deadline:
            return None
        clock.sleep(interval)


class ManualClock:
    """Time that moves only when told to: :meth:`sleep` and :meth:`advance` move both clocks
    together. For in-process tests of windows and waits."""

    def __init__(self, wall: float = 1_800_000_000.0, monotonic: float = 1_000.0) -> None:
        self._wall = wall
        self._monotonic = monotonic

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._wall

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        step = max(0.0, seconds)
        self._wall += step
        self._monotonic += step
