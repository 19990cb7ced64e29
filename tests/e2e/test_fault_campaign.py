"""A short seeded fault campaign, as `make test` runs it: the same script, faults and
invariants as the published campaign (benchmarks/fault_campaign.py), on its own lab with two
guard replicas. It fails on any violation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labtools import REPO

pytestmark = pytest.mark.lab

SEED = 14
RUNS = 10


def test_a_short_seeded_campaign_finds_no_violation(tmp_path: Path) -> None:
    out = tmp_path / "campaign.json"
    args = ["--runs", str(RUNS), "--seed", str(SEED), "--profile", "fast", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "benchmarks/fault_campaign.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.exists(), done.stdout + done.stderr
    document = json.loads(out.read_text())
    assert document["violations"] == [], done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(document["runs"]) == RUNS
    kinds = set(document["faults_by_kind"])
    assert len(kinds) >= 5, kinds  # several fault kinds, not one repeated
    assert all(r["outcome"] == "ok" for r in document["runs"])
    assert all(r["recovered_after_clear_seconds"] is not None for r in document["runs"])
    assert "invariant 1 (no split brain): 0 violation(s)" in done.stdout
