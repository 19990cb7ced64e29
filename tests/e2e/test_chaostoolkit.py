"""The Chaos Toolkit extension driven by the real `chaos run` (chaostoolkit from PyPI) against
the lab: a steady-state probe, a power-off, heal, and the hypothesis checked after recovery."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guardtools import restore_lab
from incident import TRAEFIK, running_pod
from labtools import LabHandle

pytestmark = pytest.mark.lab
CHAOS = Path(sys.executable).parent / "chaos"


@pytest.fixture
def clab(healthy_lab: LabHandle) -> Iterator[LabHandle]:
    yield healthy_lab
    restore_lab(healthy_lab)


def _python(module: str, func: str, **arguments: Any) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": "python", "module": module, "func": func}
    if arguments:
        provider["arguments"] = arguments
    return provider


def test_chaos_run_power_off_and_heal_keeps_the_hypothesis(clab: LabHandle, tmp_path: Path) -> None:
    node = running_pod(clab, TRAEFIK)["spec"]["nodeName"]
    probes = "chaosfireproof.probes"
    actions = "chaosfireproof.actions"
    experiment = {
        "version": "1.0.0",
        "title": "Traefik survives the power-off of its worker",
        "description": "fireproof fences the dead worker and releases Traefik's volume.",
        "configuration": {"fireproof_lab_dir": str(clab.state_dir)},
        "steady-state-hypothesis": {
            "title": "Traefik runs, no volume on two nodes",
            "probes": [
                {
                    "type": "probe",
                    "name": "traefik-running",
                    "tolerance": True,
                    "provider": _python(
                        probes,
                        "workload_running",
                        namespace="traefik",
                        kind="deployment",
                        name="traefik",
                    ),
                },
                {
                    "type": "probe",
                    "name": "no-double-attach",
                    "tolerance": 0,
                    "provider": _python(probes, "double_attachments"),
                },
            ],
        },
        "method": [
            {
                "type": "action",
                "name": "power-off-traefik-worker",
                "provider": _python(actions, "power_off", node=node),
                "pauses": {"after": 15},
            },
            {
                "type": "probe",
                "name": "worker-not-ready",
                "provider": _python(probes, "node_ready", node=node),
            },
            {
                "type": "action",
                "name": "heal-the-worker",
                "provider": _python(actions, "heal_node", node=node),
            },
            {
                "type": "probe",
                "name": "critical-findings",
                "provider": _python(probes, "doctor_findings", severity="critical"),
            },
        ],
        "rollbacks": [
            {
                "type": "action",
                "name": "power-on-the-worker",
                "provider": _python(actions, "power_on", node=node),
            }
        ],
    }
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(experiment))
    journal_path = tmp_path / "journal.json"
    done = subprocess.run(
        [str(CHAOS), "--no-version-check", "run", "--journal-path", str(journal_path), str(path),
         "--rollback-strategy", "always"],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        env={"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path),
             "XDG_STATE_HOME": str(tmp_path / "state")},
    )  # fmt: skip
    assert journal_path.exists(), done.stdout + done.stderr
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "completed", done.stdout + done.stderr
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    assert journal["steady_states"]["after"]["steady_state_met"] is True
    runs = {r["activity"]["name"]: r for r in journal["run"]}
    assert runs["power-off-traefik-worker"]["output"]["power"] == "off"
    assert runs["worker-not-ready"]["output"] is False
    healed = runs["heal-the-worker"]["output"]
    assert healed["ok"] is True
    assert [s["step"] for s in healed["steps"]][:3] == ["cordon", "fence", "release"]
    assert isinstance(runs["critical-findings"]["output"], int)
    assert journal["rollbacks"][0]["output"]["power"] == "on"
    # After recovery Traefik runs on another node, and never on two at once.
    assert running_pod(clab, TRAEFIK)["spec"]["nodeName"] != node


def test_discover_lists_the_activities_per_chaos_toolkit_conventions() -> None:
    """`discover()` as chaoslib calls it. (`chaos discover PACKAGE` maps a distribution to one
    top-level module, and the fireproof distribution ships two: fireproof and chaosfireproof.)"""
    import chaosfireproof

    discovery = chaosfireproof.discover(discover_system=False)
    assert discovery["extension"] == {"name": "chaosfireproof", "version": "0.1.0"}
    names = {a["name"]: a["type"] for a in discovery["activities"]}
    assert names == {
        "power_off": "action",
        "power_on": "action",
        "partition": "action",
        "heal_node": "action",
        "node_ready": "probe",
        "workload_running": "probe",
        "double_attachments": "probe",
        "doctor_findings": "probe",
    }
    args = {a["name"]: [x["name"] for x in a["arguments"]] for a in discovery["activities"]}
    assert args["workload_running"][:3] == ["namespace", "kind", "name"]
    ready = next(a for a in discovery["activities"] if a["name"] == "node_ready")
    assert ready["return_type"] == "boolean"
