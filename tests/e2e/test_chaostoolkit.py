"""The Chaos Toolkit extension driven by the real `chaos run` (chaostoolkit from PyPI) against
the lab: a steady-state probe, a power-off, heal, and the hypothesis checked after recovery."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from incident import TRAEFIK, running_pod
from labtools import REPO, LabHandle

pytestmark = pytest.mark.lab
CHAOS = Path(sys.executable).parent / "chaos"


def _python(module: str, func: str, **arguments: Any) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": "python", "module": module, "func": func}
    if arguments:
        provider["arguments"] = arguments
    return provider


def test_chaos_run_power_off_and_heal_keeps_the_hypothesis(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    node = running_pod(healthy_lab, TRAEFIK)["spec"]["nodeName"]
    probes = "chaosfireproof.probes"
    actions = "chaosfireproof.actions"
    experiment = {
        "version": "1.0.0",
        "title": "Traefik survives the power-off of its worker",
        "description": "fireproof fences the dead worker and releases Traefik's volume.",
        "configuration": {"fireproof_lab_dir": str(healthy_lab.state_dir)},
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
    done = _chaos(
        "run", "--journal-path", str(journal_path), str(path), "--rollback-strategy", "always",
        cwd=tmp_path,
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
    assert running_pod(healthy_lab, TRAEFIK)["spec"]["nodeName"] != node


def _chaos(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHAOS), "--no-version-check", *args],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=cwd,
        env={"PATH": str(Path(sys.executable).parent), "HOME": str(cwd),
             "XDG_STATE_HOME": str(cwd / "state"), **(env or {})},
    )  # fmt: skip


def test_chaos_discover_lists_the_extensions_activities(tmp_path: Path) -> None:
    # The real `chaos discover`: it maps the chaosfireproof distribution to its one module.
    found = tmp_path / "discovery.json"
    done = _chaos(
        "discover", "chaosfireproof", "--no-install", "--no-system-info",
        "--discovery-path", str(found), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    discovery = json.loads(found.read_text())
    assert discovery["extension"] == {"name": "chaosfireproof", "version": "0.1.0"}
    names = {a["name"]: (a["type"], a["mod"]) for a in discovery["activities"]}
    actions, scenes, probes = (f"chaosfireproof.{m}" for m in ("actions", "scenes", "probes"))
    assert names == {
        "power_off": ("action", actions),
        "power_on": ("action", actions),
        "partition": ("action", actions),
        "heal_node": ("action", actions),
        "host_power_off": ("action", scenes),
        "host_power_on": ("action", scenes),
        "host_hang": ("action", scenes),
        "change_ip": ("action", scenes),
        "scale_workload": ("action", scenes),
        "heal_api_endpoints": ("action", scenes),
        "node_ready": ("probe", probes),
        "workload_running": ("probe", probes),
        "ready_replicas": ("probe", probes),
        "api_endpoints_live": ("probe", probes),
        "double_attachments": ("probe", probes),
        "doctor_findings": ("probe", probes),
    }
    args = {a["name"]: [x["name"] for x in a["arguments"]] for a in discovery["activities"]}
    assert args["workload_running"][:3] == ["namespace", "kind", "name"]
    assert args["scale_workload"][:4] == ["namespace", "kind", "name", "replicas"]
    ready = next(a for a in discovery["activities"] if a["name"] == "node_ready")
    assert ready["return_type"] == "boolean"


EXPERIMENTS = REPO / "chaosfireproof" / "experiments"


def test_the_shipped_scene_experiments_run_against_the_lab(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    env = {"FIREPROOF_LAB_DIR": str(healthy_lab.state_dir)}
    journals = {}
    for name in ("control-plane-ip-change", "traefik-scaled-on-rwo"):
        journal_path = tmp_path / f"{name}.journal.json"
        done = _chaos(
            "run", "--journal-path", str(journal_path), "--rollback-strategy", "always",
            str(EXPERIMENTS / f"{name}.json"), cwd=tmp_path, env=env,
        )  # fmt: skip
        assert journal_path.exists(), done.stdout + done.stderr
        journal = json.loads(journal_path.read_text())
        assert journal["status"] == "completed", done.stdout + done.stderr
        assert journal["steady_states"]["after"]["steady_state_met"] is True
        assert all(r["status"] == "succeeded" for r in journal["rollbacks"]), journal["rollbacks"]
        journals[name] = {r["activity"]["name"]: r["output"] for r in journal["run"]}
    ip = journals["control-plane-ip-change"]
    assert ip["change-the-address-of-cp-01"]["was"] == "192.0.2.71"
    assert ip["endpoints-live-after-the-change"] is False  # stale, as in the incident
    assert ip["heal-the-endpoints"]["ok"] is True
    scaled = journals["traefik-scaled-on-rwo"]
    assert scaled["scale-traefik-to-2"]["was"] == 1
    assert scaled["traefik-ready-replicas"] == 1  # the second replica cannot attach the volume
    # Rolled back: the address and the replica count as they were.
    node = healthy_lab.kubectl_json("get", "node", "tazlab-cp-01")
    assert {"type": "InternalIP", "address": "192.0.2.71"} in node["status"]["addresses"]
    deployment = healthy_lab.kubectl_json("get", "deployment", "-n", "traefik", "traefik")
    assert deployment["spec"]["replicas"] == 1
