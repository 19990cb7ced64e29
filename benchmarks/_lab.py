"""Shared helpers for benchmarks: a throwaway lab started through the real CLI."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

FIREPROOF = str(Path(sys.executable).parent / "fireproof")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FIREPROOF, *args], capture_output=True, text=True, timeout=900)


@contextlib.contextmanager
def running_lab(*up_args: str) -> Iterator[Path]:
    state_dir = Path(tempfile.mkdtemp(prefix="fireproof-bench-")) / "lab"
    result = cli("lab", "up", "--state-dir", str(state_dir), *up_args)
    if result.returncode != 0:
        cli("lab", "down", "--state-dir", str(state_dir))
        raise SystemExit(f"lab up failed: {result.stderr}")
    try:
        yield state_dir
    finally:
        cli("lab", "down", "--state-dir", str(state_dir))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def lab_pid(state_dir: Path, name: str) -> int:
    state = json.loads((state_dir / "lab.json").read_text())
    return int(next(p["pid"] for p in state["processes"] if p["name"] == name))
