"""The split-brain checker: it must catch a planted split brain (a checker that cannot fail is
worth nothing) and must not call a clean hand-over one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fireproof.errors import UsageError
from fireproof.lab.ledger import Write, check, read_ledger


def _writes(node: str, start: float, stop: float, volume: str = "pvc-1") -> list[Write]:
    """A writer every 200 ms from ``start`` to ``stop``."""
    out = []
    t = start
    while t <= stop + 1e-9:
        out.append(Write(round(t, 4), volume, node, f"blog/{node}-pod"))
        t += 0.2
    return out


def test_a_clean_hand_over_is_no_split_brain() -> None:
    # The old node's VM went off at 10.0; the new node started writing 3 s later.
    report = check(_writes("w1", 0, 10.0) + _writes("w2", 13.0, 20.0))
    assert report.split_brains == []
    assert report.writes == 51 + 36
    assert report.nodes == 2


def test_a_planted_split_brain_is_found_with_its_span_and_pods() -> None:
    # A partitioned node keeps writing until 15.0 while the replacement writes from 12.0.
    report = check(_writes("w1", 0, 15.0) + _writes("w2", 12.0, 20.0) + _writes("w3", 0, 20, "x"))
    assert len(report.split_brains) == 1
    found = report.split_brains[0]
    assert found.volume == "pvc-1"
    assert found.nodes == ("w1", "w2")
    assert found.first == pytest.approx(12.0, abs=0.2)
    # w2's writes up to a window after w1's last one (15.0) still overlap it.
    assert found.last == pytest.approx(16.0, abs=0.21)
    assert found.pods == {"blog/w1-pod", "blog/w2-pod"}


def test_writers_closer_than_the_window_are_a_split_brain_farther_are_not() -> None:
    handover = [Write(10.0, "v", "w1", "p"), Write(10.9, "v", "w2", "p")]
    assert len(check(handover).split_brains) == 1
    assert check(handover, window=0.5).split_brains == []


def test_two_separate_episodes_are_two_split_brains() -> None:
    writes = (
        _writes("w1", 0, 5) + _writes("w2", 4, 6) + _writes("w1", 30, 35) + _writes("w2", 34, 36)
    )
    assert [round(s.first) for s in check(writes).split_brains] == [4, 34]


def test_the_ledger_file_is_read_with_since_and_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    rows = [
        {"t": 1.0, "volume": "v", "node": "a", "pod": "ns/p", "vm_running": True},
        {"t": 2.0, "volume": "v", "node": "b", "pod": "ns/p", "vm_running": True},
        {"t": 2.1, "volume": "v", "node": "c", "pod": "ns/p", "vm_running": False},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"t": 3.0, "vol')
    assert [w.node for w in read_ledger(path)] == ["a", "b"]
    assert [w.node for w in read_ledger(path, since=1.5)] == ["b"]
    path.write_text('{"t": 1}\n' + json.dumps(rows[0]) + "\n")
    with pytest.raises(UsageError, match=r"ledger.jsonl:1: not a ledger record"):
        list(read_ledger(path))
    with pytest.raises(UsageError, match="no ledger at"):
        list(read_ledger(tmp_path / "missing.jsonl"))
