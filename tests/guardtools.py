"""Running `fireproof guard run` against the lab as a user would: a process with a config file,
its logs, its /metrics, and a way to kill it hard."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from labtools import FIREPROOF, LabHandle, has_taint, node_ready, wait_for

ANNOTATION = "fireproof.io/remediation"
CORDON_MARK = "fireproof.io/cordoned-at"
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def guard_config(lab: LabHandle, tmp_path: Path, **guard: Any) -> Path:
    """The lab's fireproof.yaml with fast guard settings (and a Lease of the test's own)."""
    doc = yaml.safe_load((lab.state_dir / "fireproof.yaml").read_text())
    doc["devices"]["lab-proxmox"].update(
        {"timeout_seconds": 2, "retries": 0, "verify_timeout_seconds": 8}
    )
    doc["remediation"] = {"workload_timeout_seconds": 30, "recover_timeout_seconds": 40}
    doc["guard"] = {
        "lease_stale_seconds": 5,
        "retry_backoff_seconds": 1,
        "storm_cooldown_seconds": 5,
        "lease_duration_seconds": 6,
        "lease_name": f"guard-{uuid.uuid4().hex[:8]}",
        **guard,
    }
    path = tmp_path / f"guard-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@dataclass
class GuardProcess:
    process: subprocess.Popen[str]
    port: int
    log_path: Path
    identity: str
    state_home: Path
    log_handle: IO[str]

    def metrics(self) -> dict[str, float]:
        """Samples of /metrics as name{labels} -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric(self, prefix: str) -> float:
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def readyz(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def journal(self) -> list[dict[str, Any]]:
        path = self.state_home / "fireproof" / "journal.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.log_handle.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log_handle.close()
        return int(self.process.returncode)


def start_guard(
    config: Path, tmp_path: Path, identity: str | None = None, *extra: str
) -> GuardProcess:
    name = identity or f"guard-{uuid.uuid4().hex[:6]}"
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    state_home = tmp_path / "state"
    handle = log_path.open("w")
    process = subprocess.Popen(
        [
            str(FIREPROOF),
            "guard",
            "run",
            "--config",
            str(config),
            "--metrics-address",
            f"127.0.0.1:{port}",
            "--id",
            name,
            *extra,
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "XDG_STATE_HOME": str(state_home)},
    )
    guard = GuardProcess(process, port, log_path, name, state_home, handle)

    def serving() -> bool:
        if process.poll() is not None:
            handle.close()
            raise AssertionError(f"guard exited {process.returncode}:\n{guard.log()}")
        try:
            return guard.readyz() == 200
        except OSError:
            return False

    wait_for("guard ready", serving, timeout=30)
    return guard


@contextmanager
def guards(config: Path, tmp_path: Path, count: int = 1) -> Iterator[list[GuardProcess]]:
    started: list[GuardProcess] = []
    try:
        for i in range(count):
            started.append(start_guard(config, tmp_path, f"guard-{i}-{uuid.uuid4().hex[:4]}"))
        yield started
    finally:
        for guard in started:
            guard.stop()


def record(lab: LabHandle, node: str) -> dict[str, Any] | None:
    annotations = lab.kubectl_json("get", "node", node)["metadata"].get("annotations", {})
    raw = annotations.get(ANNOTATION)
    return json.loads(raw) if raw else None


def restore_lab(lab: LabHandle) -> None:
    """Every machine on and reachable, no fault, no taint, cordon or record left by guard.

    It reads the lab once and touches only what a test changed: every lab test starts and ends
    with this, and each `fireproof` or kubectl call costs CPU the other workers' labs need.
    """
    lab.cli("lab", "fault", "clear")
    for machine in json.loads(lab.cli("lab", "status", "-o", "json").stdout)["nodes"]:
        # A VM that is off shows its kubelet "off", partitioned or not: reconnect it too.
        if machine["kubelet"] != "running":
            lab.cli("lab", "unpartition", machine["name"])
        if machine["power"] != "running":
            lab.cli("lab", "power-on", machine["name"])
    for node in lab.kubectl_json("get", "nodes")["items"]:
        name = node["metadata"]["name"]
        if has_taint(node, OUT_OF_SERVICE, "NoExecute"):
            lab.kubectl("taint", "node", name, f"{OUT_OF_SERVICE}-")
        annotations = node["metadata"].get("annotations", {})
        marks = [m for m in (ANNOTATION, CORDON_MARK) if m in annotations]
        if marks:
            lab.kubectl("annotate", "node", name, *(f"{m}-" for m in marks))
        if node["spec"].get("unschedulable"):
            lab.kubectl("uncordon", name)
    wait_for(
        "all nodes Ready",
        lambda: all(node_ready(n) == "True" for n in lab.kubectl_json("get", "nodes")["items"]),
        timeout=90,
    )
