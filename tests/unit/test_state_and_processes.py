from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from fireproof.errors import NotFoundError, UsageError
from fireproof.lab import processes
from fireproof.lab.state import LabPaths, LabState, ProcessRecord


def _state() -> LabState:
    return LabState(
        profile="fast",
        topology="minimal",
        workers=None,
        kubernetes_version="v1.37.2",
        bin_dir="/bin",
        ports={"apiserver": 1, "agent": 2},
        processes=(ProcessRecord("x", 1, 2),),
        started_at=0.0,
    )


def test_state_round_trips(tmp_path: Path) -> None:
    paths = LabPaths(tmp_path)
    _state().save(paths)
    assert LabState.load(paths) == _state()


def test_missing_and_malformed_state_are_clear_errors(tmp_path: Path) -> None:
    paths = LabPaths(tmp_path)
    with pytest.raises(NotFoundError, match="no lab in"):
        LabState.load(paths)
    paths.state_file.write_text("{not json")
    with pytest.raises(UsageError, match="unreadable"):
        LabState.load(paths)
    paths.state_file.write_text('{"version": 1, "processes": []}')
    with pytest.raises(UsageError, match="malformed"):
        LabState.load(paths)


def test_spawned_process_survives_until_stopped(tmp_path: Path) -> None:
    record = processes.spawn(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "s.log"
    )
    assert processes.is_alive(record)
    assert processes.stop(record, grace_seconds=5)
    assert not processes.is_alive(record)
    assert not processes.stop(record)  # nothing left to stop


def test_recycled_pid_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    record = processes.spawn(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "s.log"
    )
    try:
        impostor = dataclasses.replace(record, start_ticks=record.start_ticks + 1)
        assert not processes.is_alive(impostor)
        assert not processes.stop(impostor)  # must not signal a stranger
        assert processes.is_alive(record)
    finally:
        processes.stop(record)


def test_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('r', flush=True); time.sleep(60)"  # noqa: E501
    log = tmp_path / "stubborn.log"
    record = processes.spawn("stubborn", [sys.executable, "-c", code], log)
    import time

    deadline = time.monotonic() + 10
    while "r" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes.stop(record, grace_seconds=0.5)
    assert not processes.is_alive(record)


def test_controllers_restart_on_new_ports_when_theirs_were_taken_meanwhile() -> None:
    # An API outage stops the controllers; another lab on the machine may take their ports
    # before the restart ("address already in use": a lab left without controllers).
    import socket

    from fireproof.lab.lab import _fresh_internal_ports
    from fireproof.lab.ports import free_port

    free = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        taken.listen()
        state = dataclasses.replace(
            _state(), ports={"apiserver": 1, "controller_manager": busy, "scheduler": free}
        )
        moved = _fresh_internal_ports(state)
    assert moved.ports["controller_manager"] not in (busy, free, 1)
    assert moved.ports["scheduler"] == free  # still free: kept
    assert moved.ports["apiserver"] == 1  # the kubeconfigs name it: never moved
