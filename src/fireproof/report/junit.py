"""JUnit XML: one testsuite per drill, one testcase per SLO; properties hold the environment."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from fireproof.textsafe import xml_safe


def _value(result: dict[str, Any]) -> str:
    measured = result.get("measured")
    unit = result.get("unit", "")
    shown = "not reached" if measured is None else f"{measured:g} {unit}"
    return f"measured {shown}, threshold {result.get('threshold'):g} {unit}: {result['detail']}"


def render_junit(runs: list[dict[str, Any]]) -> str:
    suites = ET.Element("testsuites", name="fireproof drills")
    for run in runs:
        slos = run.get("slos", [])
        failures = sum(1 for r in slos if not r.get("passed"))
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=str(run["spec"]["name"]),
            tests=str(len(slos)),
            failures=str(failures),
            errors="0",
            time=f"{run.get('seconds', 0):.1f}",
            timestamp=str(run.get("environment", {}).get("started", "")),
        )
        props = ET.SubElement(suite, "properties")
        for key, value in sorted(run.get("environment", {}).items()):
            ET.SubElement(props, "property", name=str(key), value=str(value))
        for key in ("fault", "recovery"):
            ET.SubElement(props, "property", name=key, value=str(run["spec"][key]))
        for result in slos:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"drill.{run['spec']['name']}",
                name=str(result["slo"]),
                time=f"{result.get('measured') or 0:.2f}" if result.get("unit") == "s" else "0",
            )
            if not result.get("passed"):
                failure = ET.SubElement(case, "failure", message=_value(result), type="SLO")
                failure.text = _value(result)
            else:
                ET.SubElement(case, "system-out").text = _value(result)
    ET.indent(suites)
    # Markup is plain ASCII; only values can carry what XML forbids, so the whole text is cleaned.
    return xml_safe(ET.tostring(suites, encoding="unicode", xml_declaration=True)) + "\n"
