"""Runs side by side: the first time of each phase, the SLO results, and the ratio of the times
to recovery (the "before and after guard" view). The first run is the baseline."""

from __future__ import annotations

from typing import Any

from fireproof.report.phases import PHASES, RUNNING


def recovery_seconds(run: dict[str, Any]) -> float | None:
    """When the last followed workload was Running elsewhere (None: never within the drill)."""
    workloads = {s["workload"] for s in run["spec"].get("slo", []) if "workload" in s} or {
        t["running"] for t in run["spec"].get("targets", []) if "running" in t
    }
    times: dict[str, float] = {}
    for entry in run.get("timeline", []):
        if entry["phase"] != RUNNING:
            continue
        for label in workloads:
            if label in entry["evidence"]:
                times.setdefault(label, entry["t"])
    if not workloads or len(times) < len(workloads):
        return None
    return max(times.values())


def first_times(run: dict[str, Any]) -> dict[str, float]:
    seen: dict[str, float] = {}
    for entry in run.get("timeline", []):
        seen.setdefault(entry["phase"], entry["t"])
    return seen


def compare_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    phases: list[str] = []
    for run in runs:
        for phase in first_times(run):
            if phase not in phases:
                phases.append(phase)
    times = [first_times(run) for run in runs]
    # The incident's order, whatever each run met first.
    order = {phase: i for i, phase in enumerate(PHASES)}
    phases.sort(key=lambda phase: order.get(phase, len(order)))
    # A list, not a mapping: JSON writers may sort keys, and the order is the point.
    table = [{"phase": phase, "times": [t.get(phase) for t in times]} for phase in phases]
    recoveries = [recovery_seconds(run) for run in runs]
    base = recoveries[0]
    ratios = [
        round(r / base, 2) if r is not None and base not in (None, 0) else None for r in recoveries
    ]
    # A baseline that never recovered was watched for its whole run: a lower bound of the
    # speed-up, never an invented ratio.
    at_least = [
        round(float(runs[0].get("seconds", 0)) / r, 1)
        if base is None and r is not None and r > 0
        else None
        for r in recoveries
    ]
    return {
        "runs": [
            {
                "name": run["spec"]["name"],
                "recovery": run["spec"]["recovery"],
                "verdict": run["verdict"],
                "started": run.get("environment", {}).get("started"),
            }
            for run in runs
        ],
        "phases": table,
        "slos": [
            [
                {"slo": r["slo"], "passed": r["passed"], "measured": r["measured"]}
                for r in run["slos"]
            ]
            for run in runs
        ],
        "recovery_seconds": recoveries,
        "ratio_to_first": ratios,
        "faster_than_first_at_least": at_least,
    }
