"""Session fixtures: one real lab (fast profile) shared by every integration and e2e test."""

from __future__ import annotations

import os
import signal
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from guardtools import restore_lab
from labtools import LabHandle, running_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A running `tazlab` lab (the default topology), started and stopped through the CLI."""
    with running_lab(tmp_path_factory.mktemp("lab") / "state", "--profile", "fast") as handle:
        yield handle


@pytest.fixture
def healthy_lab(lab: LabHandle) -> Iterator[LabHandle]:
    """The shared lab with every machine running, no fault, every node Ready (restored if not),
    and put back so after the test (tests that take `lab` itself find it healthy too)."""
    restore_lab(lab)
    yield lab
    restore_lab(lab)


LONGEST_FIRST = (
    "test_fault_campaign.py",  # one test of about 5 min
    "test_host_death.py",
    "test_redfish.py",
    "test_drill.py",
    "test_incident.py",
    "test_guard.py",
    "test_heal.py",
    "test_lab_outage.py",
    "test_chaostoolkit.py",
)
"""Files whose tests are the longest, started first. The tests are handed out one by one (see
`OneWorkerFiles`), so the suite ends when the last test started ends: a long one must not start
last. The fast tests (unit, CLI) come last and fill the workers' tails."""

ONE_WORKER = {
    # The image (a minute of CPU) is built once and the chart's lab (two minutes) runs from it.
    "test_image.py": "image",
    "test_chart_lab.py": "image",
    # One virtualenv from the wheel for the file.
    "test_wheel.py": "wheel",
    # One lab whose BMCs are fenced over Redfish.
    "test_redfish.py": "redfish",
}
"""Files whose module fixtures are too dear to set up on every worker: each group of them runs
on one worker."""


def pytest_configure(config: pytest.Config) -> None:
    # A suite started in the background by a non-interactive shell (`make test &`, nohup)
    # inherits Ctrl-C ignored, and so would every CLI the tests start: the CLI rightly keeps
    # an ignored SIGINT ignored, and the Ctrl-C tests would fail. Give them a terminal's.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def weight(item: pytest.Item) -> int:
        name = item.path.name
        if name in LONGEST_FIRST:
            return LONGEST_FIRST.index(name)
        return len(LONGEST_FIRST) + (1 if "unit" in item.path.parts else 0)

    items.sort(key=weight)  # stable: the order within a file is kept


class OneWorkerFiles(LoadScopeScheduling):
    """Tests one by one to whichever worker is free, except the `ONE_WORKER` groups (handed out
    first, each whole). xdist's own `loadgroup` cannot do it here: it tags node ids through an
    attribute that pytest 9 no longer reads, so its groups silently split."""

    def _split_scope(self, nodeid: str) -> str:
        file = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
        return ONE_WORKER.get(file, nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    return OneWorkerFiles(config, log) if config.getvalue("dist") == "loadgroup" else None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Each test group's time and the slowest tests, into `make test`'s phase record (see
    scripts/phases.py); only the controller writes, and only under `make test`."""
    if hasattr(config, "workerinput") or not os.environ.get("FIREPROOF_PHASES"):
        return
    spent: dict[str, float] = defaultdict(float)
    failed: set[str] = set()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                spent[report.nodeid] += report.duration
                if report.failed:
                    failed.add(report.nodeid)
    groups: dict[str, list[str]] = defaultdict(list)
    for nodeid in spent:
        groups["/".join(nodeid.split("/")[:2])].append(nodeid)
    script = Path(__file__).resolve().parents[1] / "scripts" / "phases.py"
    sys.path.insert(0, str(script.parent))
    try:
        import phases
    finally:
        sys.path.pop(0)
    for group, ids in sorted(groups.items()):
        bad = len([i for i in ids if i in failed])
        detail = f"{len(ids)} tests, {bad} failed (summed over the workers)"
        phases.record("group", group, sum(spent[i] for i in ids), detail)
    for nodeid in sorted(spent, key=spent.__getitem__, reverse=True)[:10]:
        phases.record("slow", nodeid, spent[nodeid], "failed" if nodeid in failed else "")
