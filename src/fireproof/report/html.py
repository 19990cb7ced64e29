"""A self-contained HTML page: a Gantt-like timeline drawn as inline SVG (a lane per node, pod,
volume and event stream, SLO threshold lines, tooltips), the verdicts, and the raw run as
embedded JSON. No network at view time: no external script, style, font or image, and a
Content-Security-Policy that forbids fetching anything."""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2

from fireproof.jsontext import dumps
from fireproof.report.compare import compare_runs

WIDTH = 760
LANE = 26
LEFT = 230
EVENT_PHASES = {"failed-attach-volume", "fenced", "host-fenced", "released"}
COLORS = {
    "fault": "#b91c1c",
    "host-off": "#b91c1c",
    "scaled": "#b91c1c",
    "address-changed": "#b91c1c",
    "endpoints-stale": "#d97706",
    "api-client-crashloop": "#dc2626",
    "endpoints-repaired": "#7c3aed",
    "api-clients-ready": "#16a34a",
    "replica-created": "#2563eb",
    "replica-running": "#16a34a",
    "workload-ready": "#16a34a",
    "vm-off": "#b91c1c",
    "partitioned": "#b91c1c",
    "lease-stale": "#d97706",
    "node-not-ready": "#d97706",
    "unreachable-taint": "#d97706",
    "pod-terminating": "#d97706",
    "failed-attach-volume": "#dc2626",
    "replacement-created": "#2563eb",
    "fenced": "#7c3aed",
    "host-fenced": "#7c3aed",
    "released": "#7c3aed",
    "volume-detached": "#0891b2",
    "volume-attached-elsewhere": "#0891b2",
    "replacement-running": "#16a34a",
    "node-ready": "#16a34a",
    "restored": "#16a34a",
}


def _lane_of(entry: dict[str, Any]) -> tuple[str, str]:
    obj = str(entry["object"])
    if entry["phase"] in EVENT_PHASES:
        return "event", f"events: {obj.split('/', 1)[-1]}"
    kind = obj.split("/", 1)[0]
    return {"volumeattachment": "volume", "drill": "drill"}.get(kind, kind), obj


def _lanes(run: dict[str, Any]) -> dict[str, Any]:
    timeline = run.get("timeline", [])
    thresholds = [
        (r["threshold"], r["slo"], r["passed"])
        for r in run.get("slos", [])
        if r.get("unit") == "s" and r.get("threshold")
    ]
    span = max([e["t"] for e in timeline] + [t for t, _, _ in thresholds] + [1.0]) * 1.05
    scale = WIDTH / span
    lanes: dict[str, dict[str, Any]] = {}
    order = {"drill": 0, "node": 1, "pod": 2, "volume": 3, "event": 4}
    for entry in timeline:
        kind, label = _lane_of(entry)
        lane = lanes.setdefault(label, {"label": label, "kind": kind, "marks": []})
        lane["marks"].append(
            {
                "x": round(LEFT + entry["t"] * scale, 1),
                "t": entry["t"],
                "phase": entry["phase"],
                "evidence": entry["evidence"],
                "color": COLORS.get(entry["phase"], "#475569"),
            }
        )
    rows = sorted(lanes.values(), key=lambda lane: (order.get(lane["kind"], 9), lane["label"]))
    for index, lane in enumerate(rows):
        lane["y"] = 40 + index * LANE
        xs = [m["x"] for m in lane["marks"]]
        lane["x1"], lane["x2"] = min(xs), max(xs)
    ticks = []
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800) if span / s <= 12)
    t = 0.0
    while t <= span:
        ticks.append({"x": round(LEFT + t * scale, 1), "label": f"{t:g}s"})
        t += step
    height = 40 + len(rows) * LANE + 30
    return {
        "lanes": rows,
        "ticks": ticks,
        "height": height,
        "width": LEFT + WIDTH + 20,
        "thresholds": [
            {"x": round(LEFT + t * scale, 1), "label": label, "passed": passed}
            for t, label, passed in thresholds
        ],
        "left": LEFT,
    }


def _environment() -> jinja2.Environment:
    loader = jinja2.DictLoader(
        {
            "drill.html.j2": resources.files("fireproof.report")
            .joinpath("templates/drill.html.j2")
            .read_text(encoding="utf-8")
        }
    )
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)


def render_html(runs: list[dict[str, Any]]) -> str:
    """One run (a drill report) or several (a comparison, the first as the baseline)."""
    data = dumps(runs if len(runs) > 1 else runs[0], indent=1, sort_keys=True)
    return (
        _environment()
        .get_template("drill.html.j2")
        .render(
            runs=[{"run": run, "chart": _lanes(run)} for run in runs],
            comparison=compare_runs(runs) if len(runs) > 1 else None,
            # `<` occurs only inside JSON strings, where \u003c means the same: the script
            # element can then never be ended early (`</script>`) nor commented (`<!--`).
            data=data.replace("<", "\\u003c"),
        )
    )
