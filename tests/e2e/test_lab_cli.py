"""`fireproof lab` as a user runs it: lifecycle, status, and one clear line for bad input."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from labtools import LabHandle, run_cli

pytestmark = pytest.mark.lab


def _one_clear_error(result_stderr: str, expected: str) -> None:
    assert "Traceback" not in result_stderr
    lines = [line for line in result_stderr.strip().splitlines() if line]
    assert lines, "an error must be printed"
    assert expected in lines[0] or expected in result_stderr
    assert len(lines) <= 4, f"expected a short error, got:\n{result_stderr}"


def test_second_up_on_running_lab_starts_nothing(lab: LabHandle) -> None:
    pids_before = [p["pid"] for p in lab.state["processes"]]
    result = lab.cli("lab", "up", "--profile", "fast")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    assert [p["pid"] for p in lab.state["processes"]] == pids_before


def test_up_with_other_settings_on_running_lab_is_refused(lab: LabHandle) -> None:
    result = lab.cli("lab", "up", "--topology", "minimal")
    assert result.returncode == 1
    _one_clear_error(result.stderr, "already running")
    # Its hosts are fenced over IPMI: asking for Redfish is another lab, not this one.
    result = lab.cli("lab", "up", "--bmc", "redfish")
    assert result.returncode == 1
    _one_clear_error(result.stderr, "--bmc ipmi")


def test_status_json_reports_components_and_nodes(lab: LabHandle) -> None:
    result = lab.cli("lab", "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["healthy"] is True
    assert {c["name"] for c in status["components"]} == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "agent",
        "pebble",
        "pebble-challtestsrv",
    }
    assert all(c["running"] for c in status["components"])
    assert len(status["nodes"]) == 7
    assert all(n["address"].startswith("192.0.2.") for n in status["nodes"])


def test_status_table_is_readable(lab: LabHandle) -> None:
    result = lab.cli("lab", "status")
    assert result.returncode == 0, result.stderr
    assert "kube-apiserver" in result.stdout
    assert "tazlab-worker-01" in result.stdout
    assert "NODE" in result.stdout
    assert "POWER" in result.stdout
    assert "ACME server (Pebble): https://127.0.0.1:" in result.stdout
    assert "acme-root.pem" in result.stdout


def test_power_off_unknown_node_is_a_clear_error(lab: LabHandle) -> None:
    result = lab.cli("lab", "power-off", "no-such-node")
    assert result.returncode == 1
    _one_clear_error(result.stderr, "unknown node no-such-node")


def test_lab_kubectl_passes_through(lab: LabHandle) -> None:
    # Everything after the lab's own options belongs to kubectl.
    result = run_cli("lab", "kubectl", "--state-dir", str(lab.state_dir), "get", "nodes")
    assert result.returncode == 0, result.stderr
    assert "tazlab-worker-03" in result.stdout


def test_up_then_down_leaves_no_process(tmp_path: Path) -> None:
    state_dir = tmp_path / "own-lab"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    up = run_cli(
        "lab",
        "up",
        "--state-dir",
        str(state_dir),
        "--topology",
        "minimal",
        "--workers",
        "1",
        "--api-port",
        str(port),
    )
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={state_dir.resolve() / 'kubeconfig'}" in up.stdout
    assert f"https://127.0.0.1:{port}" in (state_dir / "kubeconfig").read_text()
    state = json.loads((state_dir / "lab.json").read_text())
    pids = [p["pid"] for p in state["processes"]]
    assert len(pids) == 7
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "agent")
    for name in (*names, "pebble", "pebble-challtestsrv"):
        assert (state_dir / "logs" / f"{name}.log").stat().st_size > 0

    down = run_cli("lab", "down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        # Gone, or a zombie waiting for init to reap it: either way nothing runs.
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    again = run_cli("lab", "down", "--state-dir", str(state_dir))
    assert again.returncode == 1
    _one_clear_error(again.stderr, "no lab is running")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--topology", "nope"], "Invalid value for '--topology'"),
        (["--profile", "slow"], "Invalid value for '--profile'"),
        (["--workers", "-3"], "Invalid value for '--workers'"),
        (["--bogus-flag"], "No such option"),
    ],
)
def test_up_rejects_bad_flags(tmp_path: Path, args: list[str], expected: str) -> None:
    result = run_cli("lab", "up", "--state-dir", str(tmp_path / "x"), *args)
    assert result.returncode == 2
    _one_clear_error(result.stderr, expected)


def test_up_with_unwritable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("lab", "up", "--state-dir", str(blocker / "lab"))
    assert result.returncode == 1
    _one_clear_error(result.stderr, "is not writable")


def test_up_with_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_cli("lab", "up", "--state-dir", str(tmp_path / "x"), "--api-port", str(port))
    assert result.returncode == 1
    _one_clear_error(result.stderr, f"port {port} on 127.0.0.1 is already in use")


def test_build_without_go_toolchain(tmp_path: Path) -> None:
    go = shutil.which("go")
    assert go is not None
    go_dir = str(Path(go).resolve().parent)
    path = os.pathsep.join(
        p
        for p in os.environ["PATH"].split(os.pathsep)
        if p and Path(p).resolve() != Path(go_dir) and not (Path(p) / "go").exists()
    )
    result = run_cli("lab", "build", env={"PATH": path, "FIREPROOF_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 1
    _one_clear_error(result.stderr, "Go toolchain")


def test_up_with_corrupted_binary_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fireproof.lab import binaries

    monkeypatch.setenv("FIREPROOF_CACHE_DIR", str(tmp_path / "cache"))
    target = binaries.cache_dir()
    target.mkdir(parents=True)
    sums = {}
    for component in binaries.COMPONENTS:
        exe = target / component
        exe.write_text("#!/bin/sh\necho ok\n")
        exe.chmod(0o755)
        sums[component] = "0" * 64  # does not match the file: as if a download was truncated
    (target / "manifest.json").write_text(json.dumps({"version": "v0", "sha256": sums}))
    result = run_cli(
        "lab",
        "up",
        "--state-dir",
        str(tmp_path / "x"),
        env={"FIREPROOF_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert result.returncode == 1
    _one_clear_error(result.stderr, "corrupted")
    assert "fireproof lab build --rebuild" in result.stderr


def test_up_with_bin_dir_lacking_binaries(tmp_path: Path) -> None:
    result = run_cli("lab", "up", "--state-dir", str(tmp_path / "x"), "--bin-dir", str(tmp_path))
    assert result.returncode == 1
    _one_clear_error(result.stderr, "lacks executable")


def test_down_with_nothing_running(tmp_path: Path) -> None:
    result = run_cli("lab", "down", "--state-dir", str(tmp_path))
    assert result.returncode == 1
    _one_clear_error(result.stderr, "no lab is running")


def test_help_is_available_for_every_lab_command() -> None:
    for command in ("build", "up", "status", "down", "power-off", "power-on", "kubectl"):
        result = run_cli("lab", command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Usage: fireproof lab" in result.stdout
