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


HEAVY_FIRST = (
    "test_drill.py",  # about 13 min on its own: the floor of the suite's time
    "test_fault_campaign.py",
    "test_chart_lab.py",
    "test_guard.py",
    "test_heal.py",
    "test_host_death.py",
    "test_image.py",  # two image builds (CPU)
    "test_incident.py",
)
"""The longest files, started first: side by side (pytest-xdist, a file per worker), the suite
ends when its longest file does, so that one must not start last."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def weight(item: pytest.Item) -> int:
        name = item.path.name
        return HEAVY_FIRST.index(name) if name in HEAVY_FIRST else len(HEAVY_FIRST)

    items.sort(key=weight)  # stable: the order within a file is kept
