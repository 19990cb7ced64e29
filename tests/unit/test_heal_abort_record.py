"""What `heal` leaves in its journal when it stops for a reason it did not choose (a bug)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_an_internal_error_during_heal_is_recorded_with_what_is_left(tmp_path: Path) -> None:
    from fireproof.cli.heal import _run
    from fireproof.heal.journal import Journal

    journal = Journal("heal node", "w1", log_path=tmp_path / "journal.jsonl")

    def bug() -> None:
        journal.record("cordon", "w1 cordoned")
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        _run(journal, "text", bug)
    last = journal.steps[-1]
    assert last.step == "aborted"
    assert last.status == "failed"
    assert "internal error: RuntimeError" in last.message
    assert "w1 cordoned" in last.message
    assert "rerun `fireproof heal node w1`" in last.message
    assert "aborted" in (tmp_path / "journal.jsonl").read_text()
