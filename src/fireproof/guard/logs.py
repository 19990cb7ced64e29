"""guard's log lines: readable on a terminal, one JSON object per line anywhere else."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from fireproof.textsafe import terminal_safe


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(line)


class TerminalLines(logging.Formatter):
    """For a person at a terminal: no control character from cluster or hypervisor text
    (JSON lines escape them already)."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal_safe(super().format(record))


def setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(TerminalLines("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    else:
        handler.setFormatter(JsonLines())
    root = logging.getLogger("fireproof")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
