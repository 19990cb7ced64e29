"""The drill's pure logic: durations, spec validation, the observer's phases from watch changes,
and verdicts (a timed-out SLO fails, never passes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fireproof.drill.spec import Slo, SloKind, SpecError, WorkloadRef, load_spec, parse_duration
from fireproof.drill.timeline import Observer
from fireproof.drill.verdict import evaluate
from fireproof.kube.watch import Change
from fireproof.report import compare_runs


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300s", 300), ("5m", 300), ("1m30s", 90), ("1h", 3600), ("90", 90), ("2.5s", 2.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "", "5 minutes", "m", "-5s", "1x"])
def test_bad_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_the_smallest_spec_loads_as_written(tmp_path: Path) -> None:
    spec = load_spec(Path(__file__).resolve().parents[2] / "drills/traefik-worker-power-off.yaml")
    assert spec.timeout == 300
    assert spec.restore is True
    assert [s.kind for s in spec.slos] == [SloKind.RUNNING_ELSEWHERE, SloKind.NO_DOUBLE_ATTACH]
    assert spec.workloads == (WorkloadRef("traefik", "deployment", "traefik"),)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name: x\n", "missing required field 'target'"),
        ("name: x\ntarget: {node: a, running: b/deployment/c}\n", "exactly one of node"),
        ("name: x\ntarget: {running: traefik/pod/x}\n", "KIND one of deployment"),
        ("name: x\ntarget: {node: A_B}\n", "not a valid node name"),
        ("name: x\ntarget: {node: a}\nfault: melt\n", "must be one of power-off"),
        (
            "name: x\ntarget: {node: a}\nslo:\n"
            "  - {node_ready_within: 5s, workload: a/deployment/b}\n",
            "use node:",
        ),
        (
            "name: x\ntarget: {node: a}\nslo:\n  - {running_elsewhere_within: 5s}\n",
            "needs workload",
        ),
        (
            "name: x\ntarget: {node: a}\nslo:\n  - {no_double_attach: false}\n",
            "only `no_double_attach: true`",
        ),
        ("name: x\ntarget: {node: a}\nname: y\n", "duplicate key"),
        ("name: x\ntarget: {node: a}\nproxmox_fault: {kind: meteor}\n", "must be one of api-error"),
    ],
)
def test_spec_errors_name_the_line(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert words in info.value.message
    assert info.value.message.startswith(f"{path}:")


def _node(name: str, ready: str, taints: list[dict[str, str]] | None = None) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {"taints": taints or []},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def _pod(uid: str, node: str, *, running: bool, deleting: bool = False) -> dict[str, object]:
    meta: dict[str, object] = {
        "uid": uid,
        "name": f"web-{uid}",
        "namespace": "ns",
        "labels": {"app": "web"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-11-25T10:00:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": node, "volumes": []},
        "status": {
            "phase": "Running" if running else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if running else "False"}],
        },
    }


def test_the_observer_sees_the_incident_and_the_verdicts_follow() -> None:
    ref = WorkloadRef("ns", "deployment", "web")
    seen = Observer(nodes={"w1"}, workloads={ref.label: (ref, {"app": "web"})})
    seen.feed(Change("Node", "INITIAL", _node("w1", "True"), 100.0))
    seen.feed(Change("Pod", "INITIAL", _pod("a", "w1", running=True), 100.0))
    seen.arm(100.0)
    seen.feed(Change("Node", "MODIFIED", _node("w1", "Unknown"), 140.0))
    seen.feed(Change("Pod", "MODIFIED", _pod("a", "w1", running=True, deleting=True), 400.0))
    seen.feed(Change("Pod", "ADDED", _pod("b", "w2", running=False), 400.5))
    slo = Slo(SloKind.RUNNING_ELSEWHERE, 60.0, workload=ref)
    # Past its threshold and not Running elsewhere: failed, and never passed later by a timeout.
    early = evaluate(slo, seen, 301.0, ["w1"], final=False)
    assert early.passed is False
    final = evaluate(slo, seen, 301.0, ["w1"], final=True)
    assert final.passed is False
    assert final.measured is None
    seen.feed(Change("Pod", "MODIFIED", _pod("b", "w2", running=True), 410.0))
    phases = [e.phase for e in seen.entries]
    assert phases == [
        "fault",
        "node-not-ready",
        "pod-terminating",
        "replacement-created",
        "replacement-running",
    ]
    assert evaluate(slo, seen, 320.0, ["w1"], final=True).measured == 310.0
    unavailable = Slo(SloKind.MAX_UNAVAILABLE, 400.0, workload=ref)
    assert evaluate(unavailable, seen, 320.0, ["w1"], final=True).measured == 310.0
    assert evaluate(Slo(SloKind.NO_DOUBLE_ATTACH), seen, 320.0, ["w1"], final=True).passed


def test_a_volume_attached_to_two_nodes_fails_no_double_attach() -> None:
    seen = Observer(nodes={"w1"}, workloads={})
    seen.arm(0.0)
    for name, node in (("va1", "w1"), ("va2", "w2")):
        va = {
            "metadata": {"name": name},
            "spec": {"nodeName": node, "source": {"persistentVolumeName": "pv-1"}},
            "status": {"attached": True},
        }
        seen.feed(Change("VolumeAttachment", "ADDED", va, 1.0))
    result = evaluate(Slo(SloKind.NO_DOUBLE_ATTACH), seen, 2.0, ["w1"], final=True)
    assert result.passed is False
    assert result.measured == 1


def test_compare_orders_phases_and_bounds_a_baseline_that_never_recovered() -> None:
    def run(name: str, entries: list[tuple[float, str, str]], seconds: float) -> dict[str, object]:
        return {
            "spec": {"name": name, "recovery": "none", "slo": [{"workload": "ns/deployment/web"}]},
            "verdict": "fail",
            "seconds": seconds,
            "slos": [],
            "timeline": [{"t": t, "phase": p, "object": "x", "evidence": e} for t, p, e in entries],
        }

    before = run("before", [(0, "fault", ""), (9, "node-not-ready", "")], 60.0)
    after = run(
        "after",
        [
            (0, "fault", ""),
            (3, "replacement-running", "ns/deployment/web Running"),
            (1, "fenced", ""),
        ],
        4.0,
    )
    result = compare_runs([before, after])
    assert [row["phase"] for row in result["phases"]] == [
        "fault",
        "node-not-ready",
        "fenced",
        "replacement-running",
    ]
    assert result["recovery_seconds"] == [None, 3]
    assert result["faster_than_first_at_least"] == [None, 20.0]


def test_a_workload_never_on_the_drills_nodes_needs_no_recovery() -> None:
    ref = WorkloadRef("ns", "deployment", "web")
    seen = Observer(nodes={"w1"}, workloads={ref.label: (ref, {"app": "web"})})
    seen.feed(Change("Pod", "INITIAL", _pod("a", "w2", running=True), 0.0))
    seen.arm(0.0)
    result = evaluate(
        Slo(SloKind.RUNNING_ELSEWHERE, 60.0, workload=ref), seen, 5.0, ["w1"], final=False
    )
    assert result.passed is True
    assert result.measured == 0.0
    moved = Observer(nodes={"w1"}, workloads={ref.label: (ref, {"app": "web"})})
    moved.feed(Change("Pod", "INITIAL", _pod("a", "w1", running=True), 0.0))
    moved.arm(0.0)
    pending = evaluate(
        Slo(SloKind.RUNNING_ELSEWHERE, 60.0, workload=ref), moved, 5.0, ["w1"], final=False
    )
    assert pending.passed is None


def test_a_replacement_on_a_node_ha_restarted_on_another_host_counts_as_elsewhere() -> None:
    # A host drill's targets are its nodes by name. Proxmox HA restarts one of them (w2) on a
    # surviving host: a replacement already Ready there is the workload back, from the moment
    # the drill learns of the move, and not before.
    ref = WorkloadRef("ns", "deployment", "web")
    seen = Observer(nodes={"w1", "w2"}, workloads={ref.label: (ref, {"app": "web"})})
    seen.feed(Change("Pod", "INITIAL", _pod("a", "w1", running=True), 0.0))
    seen.arm(0.0)
    seen.feed(Change("Pod", "MODIFIED", _pod("a", "w1", running=True, deleting=True), 10.0))
    seen.feed(Change("Pod", "ADDED", _pod("b", "w2", running=True), 12.0))
    slo = Slo(SloKind.RUNNING_ELSEWHERE, 60.0, workload=ref)
    assert evaluate(slo, seen, 13.0, ["w1", "w2"], final=False).passed is None
    seen.moved("w2", 14.0, "VM 202 runs on pve-01 now")
    assert [e.phase for e in seen.entries][-2:] == ["ha-recovered", "replacement-running"]
    result = evaluate(slo, seen, 15.0, ["w1", "w2"], final=False)
    assert (result.passed, result.measured) == (True, 14.0)
    unavailable = Slo(SloKind.MAX_UNAVAILABLE, 60.0, workload=ref)
    assert evaluate(unavailable, seen, 15.0, ["w1", "w2"], final=True).measured == 14.0


def test_a_drill_pauses_guard_with_the_annotation_guard_reads() -> None:
    # drill and guard are sibling layers (neither imports the other): one name, kept equal here.
    from fireproof.drill.plan import GUARD_PAUSE
    from fireproof.guard.record import PAUSE_ANNOTATION

    assert GUARD_PAUSE == PAUSE_ANNOTATION
