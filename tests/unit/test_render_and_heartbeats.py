from __future__ import annotations

from pathlib import Path

from fireproof.cli.render import table
from fireproof.lab.agent.fleet import HeartbeatStats


def test_table_aligns_columns_like_kubectl() -> None:
    out = table(["NAME", "STATUS"], [("a-long-name", "Ready"), ("b", "NotReady")])
    lines = out.splitlines()
    assert lines[0] == "NAME          STATUS"
    assert lines[1] == "a-long-name   Ready"
    assert lines[2] == "b             NotReady"


def test_heartbeat_gaps_ignore_intentional_outages() -> None:
    stats = HeartbeatStats()
    stats.record(0.0)
    stats.record(1.1)
    stats.interrupt()  # powered off: the silence that follows is not lag
    stats.record(50.0)
    stats.record(51.5)
    assert stats.gaps == [1.1, 1.5]
    assert stats.max_gap == 1.5
    assert stats.renewals == 4


def test_tables_and_terminal_text_drop_every_control_character() -> None:
    from fireproof.cli.render import table, terminal_safe

    hostile = "vm\x1b]0;title\x07-\x1b[2J\x9b31m\rname"
    assert terminal_safe(hostile) == "vm]0;title-[2J31mname"
    out = table(["NAME"], [[hostile]])
    assert not any(ord(c) < 32 and c != "\n" for c in out)
    assert "\x9b" not in out
    assert "title" in out


def test_user_info_is_told_from_an_at_sign_elsewhere_in_a_url() -> None:
    # Such URLs are refused at load (the password would be printed with the URL).
    from fireproof.textsafe import has_userinfo

    assert has_userinfo("https://root:pw@pve:8006/api2/json")
    assert not has_userinfo("https://pve:8006/a@b")  # @ in the path
    assert not has_userinfo("https://pve:8006/x?u=a@b")
    assert has_userinfo("user@host:8006")


def test_json_output_is_always_json_and_junit_always_well_formed_xml(tmp_path: Path) -> None:
    import json
    import math

    from junitparser import JUnitXml

    from fireproof.jsontext import dumps
    from fireproof.report.junit import render_junit

    text = dumps({"measured": math.nan, "worst": [math.inf, 1.5]})
    assert json.loads(text) == {"measured": None, "worst": [None, 1.5]}
    run = {
        "spec": {"name": "evil\x1b]52;c;aGk=\x07", "fault": "power-off", "recovery": "none"},
        "environment": {"started": "2026-12-05T00:00:00Z", "node": "w1\x00\x0c"},
        "slos": [
            {
                "slo": "ready\x1b[2J",
                "passed": False,
                "measured": None,
                "threshold": 60,
                "unit": "s",
                "detail": "bad\x08",
            }
        ],
        "seconds": 1.0,
    }
    path = tmp_path / "junit.xml"
    path.write_text(render_junit([run]))
    (suite,) = JUnitXml.fromfile(str(path))
    assert suite.name == "evil]52;c;aGk="
    assert not any(ord(c) < 9 or 13 < ord(c) < 32 for c in path.read_text())
