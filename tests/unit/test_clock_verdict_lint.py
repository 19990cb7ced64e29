"""The lint that keeps wall-clock verdicts out of tests (scripts/lint_clock_verdicts.py): it
refuses an elapsed real time in an assert, and lets orders, fake clocks and waits through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LINT = Path(__file__).resolve().parents[2] / "scripts" / "lint_clock_verdicts.py"


def _lint(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_sample.py"
    test.write_text(source)
    return subprocess.run(
        [sys.executable, str(LINT), str(tmp_path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "source",
    [
        # The failover test of issue 31, as it was (its name for the figure changed).
        "import time\ndef test_x():\n    started = time.monotonic()\n"
        "    waited = time.monotonic() - started\n    assert waited <= 6 + 3\n",
        "import time\ndef test_x():\n    started = time.time()\n"
        "    assert time.time() - started >= 1.5\n",
        "from time import perf_counter\ndef test_x():\n    t0 = perf_counter()\n"
        "    spent = perf_counter() - t0\n    total = spent * 2\n    assert total < 1\n",
        "import datetime as dt\ndef test_x(then):\n"
        "    assert (dt.datetime.now() - then).total_seconds() < 5\n",
    ],
)
def test_an_elapsed_real_time_in_an_assert_is_refused(tmp_path: Path, source: str) -> None:
    done = _lint(tmp_path, source)
    assert done.returncode == 1
    assert "test_sample.py:" in done.stderr
    assert "an assert on elapsed real time" in done.stderr


@pytest.mark.parametrize(
    "source",
    [
        # An instant compared with recorded stamps is an order (test_ledger.py).
        "import time\ndef test_x(writes):\n    off_at = time.time()\n"
        "    assert max(writes) <= off_at\n",
        # An injected fake clock advances only when told (tests/unit/test_guard_logic.py).
        "def test_x(clock):\n    start = clock.monotonic()\n"
        "    assert clock.monotonic() - start == 30.0\n    assert clock.monotonic() <= 99\n",
        # A timeout bounds a wait; it is not the verdict.
        "import time\ndef test_x(probe):\n    deadline = time.monotonic() + 60\n"
        "    while time.monotonic() < deadline and not probe():\n        time.sleep(1)\n"
        "    assert probe()\n",
    ],
)
def test_orders_fake_clocks_and_bounded_waits_pass(tmp_path: Path, source: str) -> None:
    done = _lint(tmp_path, source)
    assert done.returncode == 0, done.stderr


def test_the_suite_itself_has_no_wall_clock_verdict() -> None:
    done = subprocess.run(
        [sys.executable, str(LINT), str(LINT.parents[1] / "tests")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
