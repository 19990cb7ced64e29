"""Plain-text tables and JSON for terminal output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from fireproof.jsontext import dumps
from fireproof.textsafe import terminal_safe


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A kubectl-style table: upper-case headers, columns padded by three spaces."""
    cells = [[str(h) for h in headers], *[[terminal_safe(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def emit_json(data: Any) -> None:
    click.echo(dumps(data, indent=2, sort_keys=True, default=str))


def progress(message: str) -> None:
    """Progress lines go to stderr so stdout stays clean for `-o json`."""
    click.echo(message, err=True)


__all__ = ["emit_json", "progress", "table", "terminal_safe"]
