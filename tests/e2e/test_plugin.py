"""The kubectl plugin as kubectl users install it: the single binary `make plugin` builds
(PyInstaller), installed offline by krew (built from the Go module proxy) into a fresh
KREW_ROOT, then run as `kubectl fireproof` against the lab, with no Python venv in sight."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fireproof.lab.gotools import KREW, locate

from labtools import REPO, LabHandle

pytestmark = pytest.mark.lab


def test_krew_installs_the_single_binary_plugin_and_kubectl_runs_it(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    out = tmp_path / "krew-dist"
    built = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plugin.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    manifest = out / "fireproof.yaml"
    assert 'sha256: "' in manifest.read_text()
    root = tmp_path / "krew-root"
    kubectl_dir = healthy_lab.kubectl_path.parent
    # Nothing of the project's Python: only the system's basics, krew's bin and kubectl.
    env = {
        "PATH": f"{root / 'bin'}:{kubectl_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KREW_ROOT": str(root),
    }
    done = subprocess.run(
        [str(locate(KREW)), "install", f"--manifest={manifest}",
         f"--archive={out / 'kubectl-fireproof_linux_amd64.tar.gz'}"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "bin" / "kubectl-fireproof").exists()
    listed = subprocess.run(
        ["kubectl", "plugin", "list"], capture_output=True, text=True, env=env, timeout=60
    )
    assert "kubectl-fireproof" in listed.stdout
    version = subprocess.run(
        ["kubectl", "fireproof", "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert version.stdout.startswith("kubectl fireproof, version "), version.stderr
    doctor = subprocess.run(
        ["kubectl", "fireproof", "doctor", "--kubeconfig", str(healthy_lab.kubeconfig),
         "-o", "json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["kind"] == "DoctorReport"
    assert report["summary"]["ran"] > 10  # the checks ran against the lab
    assert "Traceback" not in doctor.stderr
    assert not any("venv" in part for part in env["PATH"].split(os.pathsep))
