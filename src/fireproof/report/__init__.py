"""Renderers of a drill run document (and comparisons of several): JUnit XML and HTML.

They take the run document as written to JSON, so a saved run renders again exactly as it did
(`fireproof drill report RUN.json`).
"""

from fireproof.report.compare import compare_runs
from fireproof.report.html import render_html
from fireproof.report.junit import render_junit

__all__ = ["compare_runs", "render_html", "render_junit"]
