"""`fireproof doctor`: the incident's patterns and the risks behind them, with evidence."""

from fireproof.doctor.model import Check, CheckResult, Context, Finding, Report, Severity
from fireproof.doctor.registry import BY_ID, CHECKS
from fireproof.doctor.render import render_json, render_junit, render_sarif, render_text
from fireproof.doctor.runner import run_checks, select

__all__ = [
    "BY_ID",
    "CHECKS",
    "Check",
    "CheckResult",
    "Context",
    "Finding",
    "Report",
    "Severity",
    "render_json",
    "render_junit",
    "render_sarif",
    "render_text",
    "run_checks",
    "select",
]
