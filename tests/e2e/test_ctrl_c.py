"""Ctrl-C while the CLI starts says "interrupted" and exits 130, never a traceback (issue 31).

Timed signals cannot aim: on a loaded machine "0.15 s after start" lands anywhere. So the
signal is sent from inside the import machinery, at exactly the moment the CLI starts to import
a given module, for modules spread over the whole import chain of the real `fireproof` command
(a `sitecustomize` on PYTHONPATH adds the hook; the command itself is unchanged). The same
points run again with every core busy.

What is not covered, on purpose: the interpreter's own start, before the first line of
`fireproof/__init__.py` runs. There a Ctrl-C is the interpreter's (it ends the process, or
Python prints its own start-up failure); no code of a package runs earlier.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from labtools import FIREPROOF

HOOK = """\
import os, signal, sys

class _CtrlCAt:
    target = os.environ.get("CTRL_C_AT")
    record = os.environ.get("CTRL_C_RECORD")

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if cls.record:  # os-level writes: open() in text mode would import modules itself
            fd = os.open(cls.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, (name + "\\n").encode())
            os.close(fd)
        if name == cls.target:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, _CtrlCAt)
"""
COMMAND = ("doctor", "--help")


def _run(hook: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FIREPROOF), *COMMAND],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(hook), **env},
    )


@pytest.fixture(scope="module")
def import_chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The hook's folder, and the modules `fireproof doctor --help` imports after its own
    package starts, in order."""
    hook = tmp_path_factory.mktemp("hook")
    (hook / "sitecustomize.py").write_text(HOOK)
    record = hook / "imported.txt"
    done = _run(hook, CTRL_C_RECORD=str(record))
    assert done.returncode == 0, done.stderr
    names = record.read_text().split()
    return hook, names[names.index("fireproof") + 1 :]


def _points(chain: list[str]) -> list[str]:
    """fireproof's own modules, click's first, and a dozen more spread over the chain."""
    ours = [n for n in chain if n.startswith("fireproof.")]
    click = [n for n in chain if n.split(".")[0] == "click"][:1]
    spread = chain[:: max(1, len(chain) // 12)]
    return list(dict.fromkeys([*ours, *click, *spread]))


@contextmanager
def _every_core_busy() -> Iterator[None]:
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(timeout=30)


@pytest.mark.parametrize("loaded", [False, True], ids=["idle", "loaded"])
def test_ctrl_c_at_any_point_of_the_cli_start_is_interrupted_never_a_traceback(
    import_chain: tuple[Path, list[str]], loaded: bool
) -> None:
    hook, chain = import_chain
    points = _points(chain)
    assert len(points) >= 10, chain  # the chain is long enough to aim at
    assert "fireproof.cli.main" in points
    assert "click" in points
    outcomes: dict[str, tuple[int, str]] = {}
    with _every_core_busy() if loaded else _nothing():
        for point in points:
            done = _run(hook, CTRL_C_AT=point)
            outcomes[point] = (done.returncode, done.stderr.strip())
    wrong = {p: o for p, o in outcomes.items() if o != (130, "interrupted")}
    assert not wrong, wrong


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_without_a_ctrl_c_the_hooked_command_runs_as_usual(
    import_chain: tuple[Path, list[str]],
) -> None:
    hook, _chain = import_chain
    done = _run(hook, CTRL_C_AT="no.such.module")
    assert done.returncode == 0, done.stderr
    assert "Usage: fireproof doctor" in done.stdout
