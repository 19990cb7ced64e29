"""The systemd unit for guard on a Proxmox host: systemd itself accepts it, its hardening holds
(systemd's own exposure score), and its command line is one `fireproof` accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from fireproof.cli.main import cli

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "fireproof-guard.service"
FIREPROOF = Path(sys.executable).parent / "fireproof"

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _local_copy(tmp_path: Path) -> Path:
    # systemd checks that ExecStart's program exists: point it at this checkout's fireproof.
    copy = tmp_path / UNIT.name
    # Quoted: a checkout may live in a directory whose name has a space (systemd's quoting).
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/fireproof", f'"{FIREPROOF}"'))
    return copy


@needs_systemd
def test_systemd_verifies_the_unit(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(_local_copy(tmp_path))], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


@needs_systemd
def test_the_unit_is_hardened(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(_local_copy(tmp_path))],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout  # systemd calls < 2 "OK", 10 "UNSAFE"


def test_the_units_command_line_is_one_fireproof_accepts() -> None:
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[0] == "/usr/local/bin/fireproof"
    context = cli.make_context("fireproof", argv[1:], resilient_parsing=True)
    guard = cli.get_command(context, argv[1])
    assert isinstance(guard, click.Group)
    assert guard.name == "guard"
    run = guard.make_context("guard", argv[2:], parent=context, resilient_parsing=True)
    command = guard.get_command(run, argv[2])
    assert command is not None
    params = command.make_context("run", argv[3:], parent=run).params
    assert str(params["config_path"]) == "/etc/fireproof/fireproof.yaml"
    assert params["metrics_address"] == "127.0.0.1:9108"
