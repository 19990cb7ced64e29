"""The fault campaign's sixth invariant: a control-plane panic logged during a run is caught."""

from __future__ import annotations

import sys
from pathlib import Path

from fireproof.lab.state import LabPaths

from labtools import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from _campaign_checks import control_plane_panics, crashed

PANIC_LINE = (
    'E1205 10:45:50.685568   18390 panic.go:336] "Observed a panic" panic="runtime error: '
    'invalid memory address or nil pointer dereference"\n'
)


def test_a_panic_logged_during_a_run_is_a_violation(tmp_path: Path) -> None:
    paths = LabPaths(tmp_path)
    paths.logs.mkdir()
    kcm = paths.log("kube-controller-manager")
    kcm.write_text("I1205 10:45:29.374092   18390 flags.go:64] FLAG: --v=1\n" + PANIC_LINE)
    before = control_plane_panics(paths)
    assert before["kube-controller-manager"] == 1  # an earlier run's panic
    assert before["kube-scheduler"] == 0  # no log yet
    assert crashed(before, control_plane_panics(paths)) == []
    with kcm.open("a") as log:
        log.write(PANIC_LINE)
    found = crashed(before, control_plane_panics(paths))
    assert [(v.invariant, v.detail) for v in found] == [
        (6, "kube-controller-manager panicked 1 time(s) (see its log)")
    ]
