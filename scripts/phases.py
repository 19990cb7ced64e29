"""`make test`'s per-phase summary: how long each build, the lint and each test group took.

    phases.py time NAME -- CMD...   run CMD, record NAME's wall time and exit code
    phases.py summary               print the table (builds and lint, the test groups that
                                    tests/conftest.py records, the slowest tests)

The record is a TSV file named by $FIREPROOF_PHASES (default .test-phases.tsv), emptied by
`make test` at its start. A contributor on a slow laptop sees where the time went.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

RECORD = Path(os.environ.get("FIREPROOF_PHASES", ".test-phases.tsv"))


def record(kind: str, name: str, seconds: float, detail: str) -> None:
    with RECORD.open("a") as out:
        out.write(f"{kind}\t{name}\t{seconds:.1f}\t{detail}\n")


def time_command(name: str, argv: list[str]) -> int:
    started = time.monotonic()
    code = subprocess.call(argv)
    record("phase", name, time.monotonic() - started, "ok" if code == 0 else f"exit {code}")
    return code


def summary() -> None:
    rows = [line.split("\t") for line in RECORD.read_text().splitlines()] if RECORD.exists() else []
    print("\n== make test: where the time went ==")
    for kind, title in (("phase", "phase"), ("group", "test group"), ("slow", "slowest test")):
        chosen = [r for r in rows if len(r) == 4 and r[0] == kind]
        if not chosen:
            continue
        width = max(len(r[1]) for r in chosen)
        print(f"{title:<{width}}  {'seconds':>8}  detail")
        for _kind, name, seconds, detail in chosen:
            print(f"{name:<{width}}  {float(seconds):>8.1f}  {detail}")
        print()


def main(argv: list[str]) -> int:
    if argv[:1] == ["time"] and len(argv) > 3 and argv[2] == "--":
        return time_command(argv[1], argv[3:])
    if argv == ["summary"]:
        summary()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
