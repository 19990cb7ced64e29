"""A clean install: the wheel `uv build` makes, in a fresh virtualenv on a PATH without Go,
runs every command against the lab, explains that `lab build` needs Go, and works as a kubectl
plugin (`kubectl fireproof …`) with the lab's own kubectl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labtools import REPO, LabHandle

pytestmark = pytest.mark.lab

UV = REPO / ".tools" / "bin" / "uv"


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(work / "unused")}
    build = [str(UV), "build", "--wheel", "--out-dir", str(work / "dist"), str(REPO)]
    subprocess.run(build, check=True, capture_output=True, env=env, timeout=600)
    wheel = next((work / "dist").glob("fireproof-*.whl"))
    venv = work / "venv"
    subprocess.run(
        [str(UV), "venv", "--python", sys.executable, str(venv)], check=True, capture_output=True
    )
    install = [str(UV), "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    return venv / "bin"


def _run(
    venv_bin: Path, *argv: str, lab: LabHandle | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {
        "PATH": f"{venv_bin}:/usr/bin:/bin",  # no Go, no checkout
        "HOME": os.environ.get("HOME", "/root"),
        **({"FIREPROOF_LAB_DIR": str(lab.state_dir)} if lab else {}),
        **env,
    }
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=300, env=clean, cwd="/"
    )


def test_the_installed_wheel_runs_every_command(venv_bin: Path, lab: LabHandle) -> None:
    fp = str(venv_bin / "fireproof")
    assert _run(venv_bin, fp, "--version").stdout.strip().endswith("0.1.0")
    doctor = _run(venv_bin, fp, "doctor", "--lab", "-o", "json", lab=lab)
    assert doctor.returncode in (0, 3), doctor.stderr
    assert "verdict" in json.loads(doctor.stdout)["summary"]
    inventory = _run(venv_bin, fp, "inventory", "show", "--lab", lab=lab)
    assert inventory.returncode == 0, inventory.stderr
    assert "VERIFIED" in inventory.stdout
    status = _run(venv_bin, fp, "fence", "status", "tazlab-worker-01", "--lab", lab=lab)
    assert status.returncode == 0, status.stderr
    assert "on" in status.stdout
    refused = _run(venv_bin, fp, "heal", "node", "tazlab-worker-01", "--lab", "--yes", lab=lab)
    assert refused.returncode == 1  # a Ready node is never fenced
    assert "Ready" in refused.stderr
    guard = _run(venv_bin, fp, "guard", "status", "--lab", lab=lab)
    assert guard.returncode == 0, guard.stderr
    report = _run(venv_bin, fp, "drill", "report", str(REPO / "tests/data/drill-run-heal.json"))
    assert report.returncode == 0, report.stderr
    for out in (doctor, inventory, status, refused, guard, report):
        assert "Traceback" not in out.stderr


def test_lab_build_from_the_wheel_explains_that_go_is_needed(
    venv_bin: Path, tmp_path: Path
) -> None:
    done = _run(
        venv_bin,
        str(venv_bin / "fireproof"),
        "lab",
        "build",
        FIREPROOF_CACHE_DIR=str(tmp_path / "empty-cache"),
    )
    assert done.returncode == 1
    assert "needs Go" in done.stderr
    assert "Traceback" not in done.stderr


def test_kubectl_runs_fireproof_as_a_plugin(venv_bin: Path, lab: LabHandle) -> None:
    kubectl = str(lab.kubectl_path)
    plugins = _run(venv_bin, kubectl, "plugin", "list")
    assert str(venv_bin / "kubectl-fireproof") in plugins.stdout, plugins.stdout + plugins.stderr
    helped = _run(venv_bin, kubectl, "fireproof", "--help")
    assert helped.returncode == 0
    assert "Usage: kubectl fireproof" in helped.stdout
    doctor = _run(venv_bin, kubectl, "fireproof", "doctor", "--lab", "-o", "json", lab=lab)
    assert doctor.returncode in (0, 3), doctor.stderr
    assert json.loads(doctor.stdout)["summary"]["ran"] > 0
