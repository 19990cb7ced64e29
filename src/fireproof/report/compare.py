"""Runs side by side: the first time of each phase, the SLO results, and the ratio of the times
to recovery (the "before and after guard" view). The first run is the baseline."""

from __future__ import annotations

from typing import Any

RECOVERED = "replacement-running"


def recovery_seconds(run: dict[str, Any]) -> float | None:
    """When the last followed workload was Running elsewhere (None: never within the drill)."""
    workloads = {s["workload"] for s in run["spec"].get("slo", []) if "workload" in s} or {
        t["running"] for t in run["spec"].get("targets", []) if "running" in t
    }
    times: dict[str, float] = {}
    for entry in run.get("timeline", []):
        if entry["phase"] != RECOVERED:
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
    table = {phase: [first_times(run).get(phase) for run in runs] for phase in phases}
    recoveries = [recovery_seconds(run) for run in runs]
    base = recoveries[0]
    ratios = [
        round(r / base, 2) if r is not None and base not in (None, 0) else None for r in recoveries
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
    }
