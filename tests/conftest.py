"""Session fixtures: one real lab (fast profile) shared by every integration and e2e test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from guardtools import restore_lab
from labtools import LabHandle, running_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A running `tazlab` lab (the default topology), started and stopped through the CLI."""
    with running_lab(tmp_path_factory.mktemp("lab") / "state", "--profile", "fast") as handle:
        yield handle


@pytest.fixture
def healthy_lab(lab: LabHandle) -> LabHandle:
    """The shared lab with every machine running, no fault, every node Ready (restored if not)."""
    restore_lab(lab)
    return lab


LONGEST_FIRST = (
    "test_fault_campaign.py",  # one test of about 5 min
    "test_host_death.py",
    "test_drill.py",
    "test_incident.py",
    "test_guard.py",
    "test_heal.py",
    "test_lab_outage.py",
    "test_chaostoolkit.py",
)
"""Files whose tests are the longest, started first. The tests are spread one by one over the
workers (`--dist loadgroup`; a file with an expensive module fixture is one `xdist_group`, and
the groups start first), so the suite ends when the last test started ends: a long one must not
start last. The fast tests (unit, CLI) come last and fill the workers' tails."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def weight(item: pytest.Item) -> int:
        name = item.path.name
        if name in LONGEST_FIRST:
            return LONGEST_FIRST.index(name)
        return len(LONGEST_FIRST) + (1 if "unit" in item.path.parts else 0)

    items.sort(key=weight)  # stable: the order within a file is kept
