"""Reading the lab's volume write ledger, and finding every split brain in it.

A split brain is two different nodes writing the same volume within ``window`` seconds of each
other (one second by default: ten write periods). The check reads only the ledger, which the
lab's simulated kubelets write; it never trusts a remediator's own records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fireproof.errors import UsageError

DEFAULT_WINDOW = 1.0


@dataclass(frozen=True, slots=True)
class Write:
    t: float
    volume: str
    node: str
    pod: str


@dataclass(slots=True)
class SplitBrain:
    """Two nodes writing one volume, from ``first`` to ``last`` (seconds since the epoch)."""

    volume: str
    nodes: tuple[str, str]
    first: float
    last: float
    pods: set[str] = field(default_factory=set)
    overlaps: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "volume": self.volume,
            "nodes": list(self.nodes),
            "pods": sorted(self.pods),
            "first": self.first,
            "last": self.last,
            "seconds": round(self.last - self.first, 3),
            "overlaps": self.overlaps,
        }


@dataclass(frozen=True, slots=True)
class LedgerReport:
    writes: int
    volumes: int
    nodes: int
    first: float | None
    last: float | None
    split_brains: list[SplitBrain]

    def as_dict(self) -> dict[str, object]:
        return {
            "writes": self.writes,
            "volumes": self.volumes,
            "nodes": self.nodes,
            "first": self.first,
            "last": self.last,
            "split_brains": [s.as_dict() for s in self.split_brains],
        }


def read_ledger(path: Path, since: float | None = None) -> Iterator[Write]:
    """Writes of the ledger at ``path`` (those from ``since`` on, when given). A line cut short
    by a crash at the very end is skipped; any other bad line is an error naming its number."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"no ledger at {path}", hint="the lab writes it while it runs; is this a lab's dir?"
        ) from None
    with handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            write = Write(float(raw["t"]), str(raw["volume"]), str(raw["node"]), str(raw["pod"]))
            running = bool(raw.get("vm_running", True))
        except (ValueError, KeyError, TypeError):
            if number == len(lines) and not line.endswith("\n"):
                continue  # the writer was stopped mid-line
            raise UsageError(f"{path}:{number}: not a ledger record") from None
        if running and (since is None or write.t >= since):
            yield write


def check(writes: Iterable[Write], window: float = DEFAULT_WINDOW) -> LedgerReport:
    by_volume: dict[str, list[Write]] = {}
    nodes: set[str] = set()
    count = 0
    first: float | None = None
    last: float | None = None
    for w in writes:
        by_volume.setdefault(w.volume, []).append(w)
        nodes.add(w.node)
        count += 1
        first = w.t if first is None else min(first, w.t)
        last = w.t if last is None else max(last, w.t)
    found: list[SplitBrain] = []
    for volume, records in sorted(by_volume.items()):
        records.sort(key=lambda w: w.t)
        latest: dict[str, Write] = {}  # node -> its latest write so far
        open_spans: dict[tuple[str, str], SplitBrain] = {}
        for w in records:
            for other, prev in latest.items():
                if other == w.node or w.t - prev.t > window:
                    continue
                pair = (min(other, w.node), max(other, w.node))
                span = open_spans.get(pair)
                if span is None or prev.t - span.last > window:
                    span = SplitBrain(volume, pair, prev.t, w.t)
                    open_spans[pair] = span
                    found.append(span)
                span.last = w.t
                span.pods.update((prev.pod, w.pod))
                span.overlaps += 1
            latest[w.node] = w
    return LedgerReport(count, len(by_volume), len(nodes), first, last, found)
