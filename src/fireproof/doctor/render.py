"""The doctor's report as text, JSON, SARIF 2.1.0 and JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib.metadata import PackageNotFoundError, version

import click

from fireproof.doctor.model import Report, Severity
from fireproof.jsontext import dumps
from fireproof.textsafe import terminal_safe, xml_safe

_COLOURS = {Severity.CRITICAL: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {Severity.CRITICAL: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _version() -> str:
    try:
        return version("fireproof")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def render_text(report: Report, *, colour: bool) -> str:
    lines: list[str] = []

    def style(text: str, **kw: object) -> str:
        return click.style(text, **kw) if colour else text  # type: ignore[arg-type]

    for severity in (Severity.CRITICAL, Severity.WARNING, Severity.INFO):
        findings = [f for f in report.findings if f.severity is severity]
        if not findings:
            continue
        lines.append(
            style(f"{severity.upper()} ({len(findings)})", fg=_COLOURS[severity], bold=True)
        )
        for f in findings:
            lines.append(f"  [{f.check}] {terminal_safe(f.message)}")
            for item in f.evidence:
                lines.append(f"      evidence: {terminal_safe(item)}")
            lines.append(f"      fix: {terminal_safe(f.fix)}")
        lines.append("")
    skipped = [r for r in report.results if r.not_checked]
    if skipped:
        lines.append(style(f"NOT CHECKED ({len(skipped)})", bold=True))
        lines.extend(
            f"  [{r.check.id}] {r.check.name}: {terminal_safe(r.not_checked)}" for r in skipped
        )
        lines.append("")
    summary = (
        f"{report.count(Severity.CRITICAL)} critical, {report.count(Severity.WARNING)} warning, "
        f"{report.count(Severity.INFO)} info; {report.ran} checks ran, "
        f"{len(skipped)} not checked; {report.requests} API requests"
    )
    prefix = {
        "healthy": "healthy: ",
        "not checked": "not checked, nothing could be looked at: ",
        "partial": "no findings in what could be checked (some checks did not run): ",
        "findings": "",
    }[report.verdict]
    lines.append(
        style(prefix + summary, bold=True, fg="green" if report.verdict == "healthy" else None)
    )
    return "\n".join(lines)


def render_json(report: Report) -> str:
    return dumps(report.as_dict(), indent=2)


def render_sarif(report: Report) -> str:
    rules = [
        {
            "id": r.check.id,
            "name": r.check.name,
            "shortDescription": {"text": r.check.name.replace("-", " ")},
            "fullDescription": {"text": r.check.explain},
            "defaultConfiguration": {"level": _SARIF_LEVEL[r.check.severity]},
            "properties": {"family": r.check.family},
        }
        for r in report.results
    ]
    index = {r.check.id: i for i, r in enumerate(report.results)}
    results = [
        {
            "ruleId": f.check,
            "ruleIndex": index[f.check],
            "level": _SARIF_LEVEL[f.severity],
            "message": {"text": f"{f.message}. Fix: {f.fix}"},
            "locations": [
                {"logicalLocations": [{"fullyQualifiedName": obj, "kind": "resource"}]}
                for obj in f.objects[:10]
            ],
            "properties": {"evidence": list(f.evidence)},
        }
        for f in report.findings
    ]
    notifications = [
        {
            "descriptor": {"id": r.check.id},
            "level": "note",
            "message": {"text": f"not checked: {r.not_checked}"},
        }
        for r in report.results
        if r.not_checked
    ]
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "fireproof-doctor",
                        "version": _version(),
                        "informationUri": "https://github.com/fireproof/fireproof",
                        "rules": rules,
                    }
                },
                "invocations": [
                    {
                        # A scan that could look at nothing did not succeed, whatever it found.
                        "executionSuccessful": report.ran > 0,
                        "toolExecutionNotifications": notifications,
                        "properties": {"verdict": report.verdict, "checksRan": report.ran},
                    }
                ],
                "results": results,
            }
        ],
    }
    return dumps(doc, indent=2)


def render_junit(report: Report) -> str:
    failures = sum(1 for r in report.results if r.findings)
    skipped = sum(1 for r in report.results if r.not_checked)
    suite = ET.Element(
        "testsuite",
        name="fireproof-doctor",
        tests=str(len(report.results)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        timestamp=report.taken_at.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="verdict", value=report.verdict)
    ET.SubElement(props, "property", name="checks_ran", value=str(report.ran))
    for result in report.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"doctor.{result.check.family.replace(' ', '-')}",
            name=f"{result.check.id} {result.check.name}",
        )
        if result.not_checked:
            ET.SubElement(case, "skipped", message=result.not_checked)
        elif result.findings:
            text = "\n".join(
                f"[{f.severity}] {f.message}\n  " + "\n  ".join(f.evidence) + f"\n  fix: {f.fix}"
                for f in result.findings
            )
            failure = ET.SubElement(
                case,
                "failure",
                message=result.findings[0].message[:200],
                type=str(result.check.severity),
            )
            failure.text = text
    suites = ET.Element("testsuites", name="fireproof-doctor")
    suites.append(suite)
    return xml_safe(ET.tostring(suites, encoding="unicode", xml_declaration=True))
