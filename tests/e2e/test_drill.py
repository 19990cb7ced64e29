"""`fireproof drill` on the lab, run as a user runs it: recovery none (stuck, exit 3), heal
(pass, exit 0), guard (the smallest spec exactly as shipped), restore after Ctrl-C, every
output (JSON against its schema, JUnit, HTML in a real browser), comparing runs, bad specs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from junitparser import JUnitXml

import chromium

from guardtools import OUT_OF_SERVICE, free_port, guard_config, guards
from incident import TRAEFIK, attach_refusal, running_pod
from labtools import (
    FIREPROOF,
    REPO,
    LabHandle,
    has_taint,
    interrupt_when,
    node_ready,
    run_cli,
    wait_for,
)

pytestmark = pytest.mark.lab
SCHEMA = json.loads((REPO / "src/fireproof/drill/run.schema.json").read_text())


def _env(lab: LabHandle, tmp_path: Path) -> dict[str, str]:
    return {"FIREPROOF_LAB_DIR": str(lab.state_dir), "XDG_STATE_HOME": str(tmp_path / "state")}


def _drill(
    lab: LabHandle, tmp_path: Path, spec: str | Path, *args: str, timeout: float = 400
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    path = spec if isinstance(spec, Path) else tmp_path / "spec.yaml"
    if not isinstance(spec, Path):
        path.write_text(spec)
    saved = tmp_path / f"run-{time.monotonic_ns()}.json"
    done = run_cli(
        "drill", "run", str(path), "--lab", "--yes", "--save", str(saved), *args,
        env=_env(lab, tmp_path),
        timeout=timeout,
    )  # fmt: skip
    run = json.loads(saved.read_text()) if saved.exists() else {}
    return done, run


def _phases(run: dict[str, Any]) -> list[str]:
    return [e["phase"] for e in run["timeline"]]


def _first(run: dict[str, Any], phase: str) -> float:
    return min(e["t"] for e in run["timeline"] if e["phase"] == phase)


def _validate(run: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(run)


def _restored(lab: LabHandle, node: str) -> bool:
    obj = lab.kubectl_json("get", "node", node)
    return (
        node_ready(obj) == "True"
        and not has_taint(obj, OUT_OF_SERVICE, "NoExecute")
        and not obj["spec"].get("unschedulable")
    )


NONE_SPEC = """\
name: traefik-none
target: {running: traefik/deployment/traefik}
fault: power-off
recovery: none
timeout: 90s
slo:
  - {workload: traefik/deployment/traefik, running_elsewhere_within: 30s}
  - {no_double_attach: true}
"""


def test_recovery_none_shows_the_stuck_volume_fails_the_slo_and_restores(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    node = running_pod(healthy_lab, TRAEFIK)["spec"]["nodeName"]
    done, run = _drill(healthy_lab, tmp_path, NONE_SPEC, "--junit", str(tmp_path / "none.xml"))
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    _validate(run)
    # The report's own order: NotReady, then Terminating, then the volume refused elsewhere.
    assert _first(run, "node-not-ready") < _first(run, "pod-terminating")
    assert _first(run, "pod-terminating") <= _first(run, "failed-attach-volume")
    stuck = next(e for e in run["timeline"] if e["phase"] == "failed-attach-volume")
    assert attach_refusal(healthy_lab) in stuck["evidence"]
    assert {"vm-off", "unreachable-taint", "replacement-created"} <= set(_phases(run))
    assert "replacement-running" not in _phases(run)
    assert "fenced" not in _phases(run)
    assert "released" not in _phases(run)
    verdicts = {r["kind"]: r for r in run["slos"]}
    assert verdicts["running_elsewhere_within"]["passed"] is False
    assert verdicts["running_elsewhere_within"]["measured"] is None
    assert verdicts["no_double_attach"]["passed"] is True
    assert run["verdict"] == "fail"
    assert "FAIL" in done.stdout
    assert "verdict: fail" in done.stdout
    # JUnit: one testsuite, one testcase per SLO, the failure says measured vs threshold.
    xml = JUnitXml.fromfile(str(tmp_path / "none.xml"))
    suite = next(iter(xml))
    assert suite.name == "traefik-none"
    assert suite.tests == 2
    assert suite.failures == 1
    failed = [c for c in suite if c.result]
    assert "threshold 30 s" in failed[0].result[0].message
    props = {p.name: p.value for p in suite.properties()}
    assert props["kubernetes"].startswith("1.")
    assert props["lab"] == "True"
    # restore: true (the default) brought the machine and the node back.
    assert _restored(healthy_lab, node)


HEAL_SPEC = """\
name: postgres-heal
target: {running: blog/statefulset/postgres}
fault: power-off
recovery: heal
timeout: 180s
slo:
  - {workload: blog/statefulset/postgres, running_elsewhere_within: 90s}
  - {workload: blog/statefulset/postgres, max_unavailable_seconds: 120}
  - {node_ready_within: 150s}
  - {no_double_attach: true}
"""


def test_recovery_heal_passes_with_fenced_released_attached_running(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    html = tmp_path / "heal.html"
    done, run = _drill(healthy_lab, tmp_path, HEAL_SPEC, "--html", str(html), "-o", "json")
    assert done.returncode == 0, done.stderr + done.stdout
    assert json.loads(done.stdout) == run  # -o json is the same one document
    _validate(run)
    phases = _phases(run)
    for phase in ("fenced", "released", "volume-attached-elsewhere", "replacement-running"):
        assert phase in phases, phases
    # Fenced before released before the volume moved before the replacement ran.
    assert (
        _first(run, "fenced")
        <= _first(run, "released")
        <= _first(run, "volume-attached-elsewhere")
        <= _first(run, "replacement-running")
    )
    assert all(r["passed"] for r in run["slos"]), run["slos"]
    assert run["verdict"] == "pass"
    assert not run["recovery"]["errors"]
    node = run["targets"][0]["node"]
    assert not run["restore"]["problems"], done.stderr
    assert _restored(healthy_lab, node), done.stderr
    # The saved run renders again, and two runs compare (before/after).
    again = run_cli("drill", "report", str(next(tmp_path.glob("run-*.json"))), "-o", "json")
    assert again.returncode == 0
    assert json.loads(again.stdout) == run
    assert html.read_text().startswith("<!DOCTYPE html>")


def test_html_report_renders_in_chromium_with_no_request_and_no_console_error(
    tmp_path: Path,
) -> None:
    """The HTML of a saved run (from the shipped example run) renders in a real browser."""
    run = json.loads((REPO / "tests/data/drill-run-heal.json").read_text())
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(run))
    html = tmp_path / "report.html"
    done = run_cli("drill", "report", str(saved), "--html", str(html))
    assert done.returncode == 0, done.stderr
    seen = chromium.render(html, tmp_path / "report.png")
    assert seen.errors == []
    assert seen.console == []
    assert seen.requests == [html.resolve().as_uri()]  # nothing but the file itself
    assert len(seen.png) > 20_000
    # One marker per timeline entry in the SVG, and the verdict table is there.
    assert seen.svg_shapes == len(run["timeline"])
    assert run["spec"]["name"] in seen.text
    assert "running elsewhere within" in seen.text
    embedded = html.read_text().split('id="fireproof-run">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded) == run


def test_the_browser_check_catches_a_leaking_page(tmp_path: Path) -> None:
    """The check above can fail: a page that fetches something and logs an error is caught."""
    page = tmp_path / "leak.html"
    page.write_text(
        '<!DOCTYPE html><img src="http://127.0.0.1:9/x.png"><script>console.error("x")</script>'
    )
    seen = chromium.render(page, tmp_path / "leak.png")
    assert "http://127.0.0.1:9/x.png" in seen.requests
    assert any("x" in line for line in seen.console)


def test_compare_two_saved_runs(tmp_path: Path) -> None:
    base = json.loads((REPO / "tests/data/drill-run-none.json").read_text())
    after = json.loads((REPO / "tests/data/drill-run-heal.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps(base))
    (tmp_path / "b.json").write_text(json.dumps(after))
    html = tmp_path / "cmp.html"
    done = run_cli(
        "drill", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
        "-o", "json", "--html", str(html), "--junit", str(tmp_path / "cmp.xml"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    comparison = json.loads(done.stdout)
    assert [r["verdict"] for r in comparison["runs"]] == ["fail", "pass"]
    assert comparison["recovery_seconds"][0] is None  # recovery: none never recovered
    assert comparison["recovery_seconds"][1] > 0
    phases = {row["phase"]: row["times"] for row in comparison["phases"]}
    assert phases["vm-off"][0] is not None
    # The baseline never recovered: a lower bound of the speed-up, from its watched time.
    assert comparison["ratio_to_first"][1] is None
    assert comparison["faster_than_first_at_least"][1] == round(
        base["seconds"] / comparison["recovery_seconds"][1], 1
    )
    assert [row["phase"] for row in comparison["phases"]][:2] == ["fault", "vm-off"]
    text = run_cli("drill", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert "time to recovery" in text.stdout
    assert "never" in text.stdout
    assert len(list(JUnitXml.fromfile(str(tmp_path / "cmp.xml")))) == 2
    assert "Drill comparison" in html.read_text()
    one = run_cli("drill", "compare", str(tmp_path / "a.json"))
    assert one.returncode == 2
    assert "at least two" in one.stderr


def test_guard_recovery_with_the_shipped_smallest_spec(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    """drills/traefik-worker-power-off.yaml exactly as written, with `guard run --lab`."""
    env = {**os.environ, **_env(healthy_lab, tmp_path)}
    spec = REPO / "drills/traefik-worker-power-off.yaml"
    refused, _ = _drill(healthy_lab, tmp_path, spec)
    assert refused.returncode == 1
    assert "no guard holds the Lease" in refused.stderr
    port = free_port()
    log = (tmp_path / "guard.log").open("w")
    guard = subprocess.Popen(
        [str(FIREPROOF), "guard", "run", "--lab", "--metrics-address", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_for(
            "guard leading",
            lambda: "(epoch" in run_cli("guard", "status", "--lab", env=env).stdout,
            timeout=30,
        )
        done, run = _drill(healthy_lab, tmp_path, spec)
        assert done.returncode == 0, done.stderr + (tmp_path / "guard.log").read_text()
        _validate(run)
        assert {"fenced", "released", "replacement-running"} <= set(_phases(run))
        assert _first(run, "fenced") <= _first(run, "replacement-running")
        node = run["targets"][0]["node"]
        wait_for("node back and untainted", lambda: _restored(healthy_lab, node), timeout=60)
    finally:
        guard.send_signal(signal.SIGTERM)
        guard.wait(timeout=30)
        log.close()


def test_ctrl_c_mid_drill_still_restores(healthy_lab: LabHandle, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(NONE_SPEC.replace("timeout: 90s", "timeout: 300s"))
    node = running_pod(healthy_lab, TRAEFIK)["spec"]["nodeName"]
    drill = subprocess.Popen(
        [str(FIREPROOF), "drill", "run", str(spec), "--lab", "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **_env(healthy_lab, tmp_path)},
    )
    err = interrupt_when(
        drill,
        "the node NotReady",
        lambda: node_ready(healthy_lab.kubectl_json("get", "node", node)) != "True",
        timeout=60,
    )
    assert drill.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: restoring" in err
    assert _restored(healthy_lab, node)
    power = json.loads(healthy_lab.cli("lab", "status", "-o", "json").stdout)["nodes"]
    assert all(n["power"] == "running" for n in power)


BAD_SPECS = {
    "unknown key": ("name: x\ntarget: {node: tazlab-worker-01}\nfualt: power-off\n", 3, "fualt"),
    "bad duration": (
        "name: x\ntarget: {node: tazlab-worker-01}\ntimeout: soon\n",
        3,
        "must be a duration",
    ),
    "unknown workload": (
        "name: x\ntarget: {node: tazlab-worker-01}\nslo:\n"
        "  - {workload: traefik/deployment/nope, running_elsewhere_within: 60s}\n",
        4,
        "unknown workload",
    ),
    "node without a device": ("name: x\ntarget: {node: ghost-01}\n", 2, "no fencing device"),
    "malformed YAML": ("name: x\ntarget: [\n", 3, "malformed YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_specs_name_the_line_exit_2_and_touch_nothing(
    healthy_lab: LabHandle, tmp_path: Path, case: str
) -> None:
    text, line, words = BAD_SPECS[case]
    if case == "node without a device":
        healthy_lab.apply("apiVersion: v1\nkind: Node\nmetadata: {name: ghost-01}\n")
    try:
        done, run = _drill(healthy_lab, tmp_path, text)
    finally:
        healthy_lab.kubectl("delete", "node", "ghost-01", "--ignore-not-found")
    assert done.returncode == 2, done.stderr
    assert f"spec.yaml:{line}" in done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr
    assert "internal error" not in done.stderr
    assert not run
    assert not (tmp_path / "state").exists()
    power = json.loads(healthy_lab.cli("lab", "status", "-o", "json").stdout)["nodes"]
    assert all(n["power"] == "running" for n in power)


def test_partition_needs_the_lab(healthy_lab: LabHandle, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump({"name": "p", "target": {"node": "tazlab-worker-01"}, "fault": "partition"})
    )
    done = run_cli(
        "drill", "run", str(spec), "--config", str(healthy_lab.state_dir / "fireproof.yaml"),
        "--yes", env=_env(healthy_lab, tmp_path),
    )  # fmt: skip
    assert done.returncode == 2
    assert "partition works in the lab only" in done.stderr


def test_partition_with_a_proxmox_fault_held_during_guard_recovery(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    """`--config` (a guard config of the test's own) with `--lab-dir` for the lab-only faults:
    a partition, and the Proxmox API failing for the first 8 s of the recovery. guard fails
    closed, then fences once the fault is gone; the drill sees it in that order."""
    config = guard_config(healthy_lab, tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: partition-api-error\n"
        "target: {running: blog/statefulset/postgres}\n"
        "fault: partition\n"
        "recovery: guard\n"
        "timeout: 180s\n"
        "proxmox_fault: {kind: api-error, seconds: 8}\n"
        "slo:\n"
        "  - {workload: blog/statefulset/postgres, running_elsewhere_within: 120s}\n"
        "  - {no_double_attach: true}\n"
    )
    saved = tmp_path / "run.json"
    with guards(config, tmp_path):
        done = run_cli(
            "drill", "run", str(spec), "--config", str(config),
            "--lab-dir", str(healthy_lab.state_dir), "--yes", "--save", str(saved),
            env={"XDG_STATE_HOME": str(tmp_path / "state")}, timeout=400,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = json.loads(saved.read_text())
    _validate(run)
    assert run["spec"]["proxmox_fault"] == {"kind": "api-error", "seconds": 8}
    assert "partitioned" in _phases(run)
    assert "vm-off" not in _phases(run)  # the drill did not power it off: guard did
    # guard could not fence while the API failed: fenced only after the fault was cleared.
    assert _first(run, "fenced") >= 8
    assert _first(run, "fenced") <= _first(run, "replacement-running")
    assert "Proxmox fault cleared" in done.stderr
    assert all(r["passed"] for r in run["slos"])


def test_a_reboot_quicker_than_notready_still_counts_as_ready_again(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    """fault: reboot (stop, then start, through the device): the node may never be marked
    NotReady, and is Ready again once its kubelet's heartbeat is newer than the power-off."""
    spec = (
        "name: reboot\n"
        "target: {running: traefik/deployment/traefik}\n"
        "fault: reboot\n"
        "recovery: none\n"
        "timeout: 120s\n"
        "slo:\n"
        "  - {node_ready_within: 90s}\n"
    )
    done, run = _drill(healthy_lab, tmp_path, spec)
    assert done.returncode == 0, done.stderr
    _validate(run)
    assert _first(run, "vm-off") < _first(run, "node-ready")
    assert run["slos"][0]["passed"] is True
    assert _restored(healthy_lab, run["targets"][0]["node"])


def test_a_game_day_runs_two_drills_back_to_back_from_steady_state(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    """Two power-offs of Traefik's node in one `drill run`, guard recovering: the second starts
    from the steady state the first restored (the pod the first moved is Running and Ready),
    not refused for a replacement still starting."""
    config = guard_config(healthy_lab, tmp_path, restart_stopped=True)
    specs = []
    for i in (1, 2):
        spec = tmp_path / f"day-{i}.yaml"
        spec.write_text(
            f"name: traefik-power-off-{i}\n"
            "target: {running: traefik/deployment/traefik}\n"
            "fault: power-off\n"
            "recovery: guard\n"
            "timeout: 120s\n"
            "slo:\n"
            "  - {workload: traefik/deployment/traefik, running_elsewhere_within: 60s}\n"
            "  - {no_double_attach: true}\n"
        )
        specs.append(str(spec))
    saved, junit, html = tmp_path / "day.json", tmp_path / "day.xml", tmp_path / "day.html"
    with guards(config, tmp_path):
        done = run_cli(
            "drill", "run", *specs, "--config", str(config),
            "--lab-dir", str(healthy_lab.state_dir), "--yes", "--save", str(saved),
            "--junit", str(junit), "--html", str(html),
            env={"XDG_STATE_HOME": str(tmp_path / "state")}, timeout=600,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    day = json.loads(saved.read_text())
    assert day["verdict"] == "pass"
    assert [r["spec"]["name"] for r in day["runs"]] == [
        "traefik-power-off-1",
        "traefik-power-off-2",
    ]
    for run in day["runs"]:
        _validate(run)
        assert run["restore"]["problems"] == []
        assert run["restore"]["steady_seconds"] is not None
    # The second drill hit the node the first moved Traefik to.
    first, second = (r["targets"][0]["node"] for r in day["runs"])
    assert first != second
    assert "game day:" in done.stdout
    suites = JUnitXml.fromfile(str(junit))
    assert len(list(suites)) == 2
    shown = run_cli("drill", "report", str(saved))
    assert shown.returncode == 0, shown.stderr
    assert "verdict: pass" in shown.stdout
    # The game day's page, opened in a real browser: both drills, nothing fetched.
    seen = chromium.render(html, tmp_path / "day.png")
    assert seen.errors == []
    assert seen.requests == [html.resolve().as_uri()]
    assert "traefik-power-off-1" in seen.text
    assert "traefik-power-off-2" in seen.text


def test_a_drill_that_finds_no_steady_state_does_not_start(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    node = running_pod(healthy_lab, TRAEFIK)["spec"]["nodeName"]
    assert healthy_lab.kubectl("cordon", node).returncode == 0
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: cordoned\ntarget: {{node: {node}}}\nfault: power-off\nsteady_timeout: 3s\n"
    )
    done = run_cli("drill", "run", str(spec), "--lab", "--yes", env=_env(healthy_lab, tmp_path))
    assert done.returncode == 4, done.stderr
    assert f"no steady state within 3 s (node {node} cordoned)" in done.stderr
    assert "Traceback" not in done.stderr
    power = json.loads(healthy_lab.cli("lab", "status", "-o", "json").stdout)["nodes"]
    assert all(n["power"] == "running" for n in power)  # nothing was touched


def test_scaling_traefik_on_rwo_fails_as_doctor_predicts_and_is_scaled_back(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    spec = tmp_path / "scale.yaml"
    spec.write_text(
        (REPO / "drills/traefik-scale-rwo.yaml")
        .read_text()
        .replace("timeout: 120s", "timeout: 45s")
        .replace("ready_within: 60s", "ready_within: 25s")
    )
    done, run = _drill(healthy_lab, tmp_path, spec)
    assert done.returncode == 3, done.stderr
    _validate(run)
    assert "doctor predicts it fails (FP-R3/FP-R4)" in done.stderr + done.stdout
    phases = _phases(run)
    assert phases[:2] == ["fault", "scaled"]
    assert "replica-created" in phases
    assert "failed-attach-volume" in phases
    assert "workload-ready" not in phases
    (slo,) = run["slos"]
    assert slo["kind"] == "ready_within"
    assert slo["passed"] is False
    assert run["restore"]["problems"] == []
    deployment = healthy_lab.kubectl_json("get", "deployment", "-n", "traefik", "traefik")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["status"].get("readyReplicas") == 1


def _ip_change(recovery: str, timeout: str, ready_within: str) -> str:
    return (
        (REPO / "drills/control-plane-ip-change.yaml")
        .read_text()
        .replace("recovery: heal ", f"recovery: {recovery} ")
        .replace("timeout: 240s", f"timeout: {timeout}")
        .replace("ready_within: 180s", f"ready_within: {ready_within}")
    )


def test_a_control_plane_ip_change_crash_loops_the_api_clients_until_healed(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    before = healthy_lab.kubectl_json("get", "endpoints", "kubernetes")["subsets"]
    # No recovery: the clients crash-loop and the SLO fails, as in the report.
    done, run = _drill(healthy_lab, tmp_path, _ip_change("none", "50s", "40s"))
    assert done.returncode == 3, done.stderr
    _validate(run)
    phases = _phases(run)
    assert phases.count("address-changed") == 3
    assert "endpoints-stale" in phases
    crashed = [e["object"] for e in run["timeline"] if e["phase"] == "api-client-crashloop"]
    assert any(o.startswith("pod/kube-system/coredns-") for o in crashed)
    assert "endpoints-repaired" not in phases
    assert run["slos"][0]["passed"] is False
    assert run["restore"]["problems"] == []
    assert healthy_lab.kubectl_json("get", "endpoints", "kubernetes")["subsets"] == before
    # heal api-endpoints the moment they are stale: repaired, clients Ready, SLO met.
    done, run = _drill(healthy_lab, tmp_path, _ip_change("heal", "200s", "180s"))
    assert done.returncode == 0, done.stderr
    _validate(run)
    assert _first(run, "endpoints-stale") <= _first(run, "endpoints-repaired")
    assert run["slos"][0]["passed"] is True
    assert healthy_lab.kubectl_json("get", "endpoints", "kubernetes")["subsets"] == before
