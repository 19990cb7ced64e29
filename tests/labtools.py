"""Helpers shared by the lab-backed tests: run the real CLI and kubectl, wait for conditions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
FIREPROOF = Path(sys.executable).parent / "fireproof"
T = TypeVar("T")


@contextmanager
def running_lab(state_dir: Path, *up_args: str) -> Iterator[LabHandle]:
    """A lab started and stopped through the CLI, as a user does; a failed start fails the test."""
    import pytest  # only the tests use this helper

    up = run_cli("lab", "up", "--state-dir", str(state_dir), *up_args, timeout=900)
    if up.returncode != 0:
        run_cli("lab", "down", "--state-dir", str(state_dir))
        pytest.fail(f"lab up {' '.join(up_args)} failed:\n{up.stdout}\n{up.stderr}")
    try:
        yield LabHandle(state_dir)
    finally:
        run_cli("lab", "down", "--state-dir", str(state_dir))


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``fireproof`` exactly as a user would, from its console script."""
    return subprocess.run(
        [str(FIREPROOF), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        input=input,
    )


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout: float = 60, interval: float = 0.5
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@dataclass
class LabHandle:
    state_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "lab.json").read_text())

    @property
    def kubectl_path(self) -> Path:
        return Path(self.state["bin_dir"]) / "kubectl"

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--state-dir", str(self.state_dir), timeout=timeout)

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
            input=input,
        )

    def kubectl_json(self, *args: str) -> Any:
        result = self.kubectl(*args, "-o", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def apply(self, manifest: str) -> None:
        result = self.kubectl("apply", "-f", "-", input=manifest)
        assert result.returncode == 0, result.stderr


def node_ready(node: dict[str, Any]) -> str:
    for cond in node.get("status", {}).get("conditions", []):
        if cond["type"] == "Ready":
            return str(cond["status"])
    return "Unknown"


def has_taint(node: dict[str, Any], key: str, effect: str) -> bool:
    return any(
        t["key"] == key and t["effect"] == effect for t in node.get("spec", {}).get("taints", [])
    )


def deployment_manifest(name: str, namespace: str, replicas: int, image: str = "nginx:1.27") -> str:
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: main, image: "{image}"}}]
"""


def fence_pve_device(lab: LabHandle, password: str) -> dict[str, Any]:
    """A fireproof.yaml fence-agent device running ClusterLabs fence_pve against the lab's
    Proxmox emulator, with the password written to a file next to the lab's state."""
    import yaml  # the tests' own dependency, kept out of the module's import time

    access = yaml.safe_load((lab.state_dir / "proxmox.yaml").read_text())
    secret = lab.state_dir / f"fence-pve-password-{os.getpid()}-{time.monotonic_ns()}"
    secret.write_text(password)
    secret.chmod(0o600)
    return {
        "type": "fence-agent",
        "agent": "fence_pve",
        "options": {
            "ip": "127.0.0.1",
            "ipport": access["url"].rsplit(":", 1)[1],
            "username": access["user"],
            "ssl_insecure": "1",
            "pve_node_auto": "1",
            "power_timeout": "10",
        },
        "password": {"file": str(secret)},
    }


def interrupt_when(
    process: subprocess.Popen[str], what: str, probe: Callable[[], object], *, timeout: float = 90
) -> str:
    """Send SIGINT (Ctrl-C) to ``process`` once ``probe`` holds; its stderr after it exits."""
    import signal

    try:
        wait_for(what, probe, timeout=timeout)
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    return err
