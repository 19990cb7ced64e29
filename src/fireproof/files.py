"""Reading the files users name, bounded: a wrong path (``/dev/zero``, a log, a disk image)
is one clear error, not memory growing without end."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from fireproof.errors import UsageError

CONFIG_LIMIT = 1024 * 1024
"""fireproof.yaml, drill specs: hand-written, a few KB."""
RUN_DOCUMENT_LIMIT = 64 * 1024 * 1024
"""A drill's run document: its timeline grows with the cluster, still tens of MB at most."""
TERRAFORM_LIMIT = 256 * 1024 * 1024
"""A Terraform state of a big estate."""
CHUNK = 1024 * 1024
"""Read piecewise: ``read(limit)`` would allocate the whole limit up front, even for a small
file (256 MiB for every Terraform state)."""


def read_text(path: Path, *, limit: int, what: str) -> str:
    """The file's UTF-8 text; UsageError naming the file when it is missing, a directory,
    larger than ``limit`` or not text."""
    try:
        with path.open("rb") as handle:
            data = _read_at_most(handle, limit + 1)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > limit:
        raise UsageError(f"{path}: larger than {_size(limit)}: not a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _read_at_most(handle: BinaryIO, count: int) -> bytes:
    parts: list[bytes] = []
    left = count
    while left > 0 and (part := handle.read(min(CHUNK, left))):
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"
