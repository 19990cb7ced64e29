"""Start and stop the lab's long-running processes, which outlive the CLI that started them."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from fireproof.errors import PermanentError
from fireproof.lab.state import ProcessRecord


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    if fields is None:
        raise ProcessLookupError(pid)
    return int(fields[19])


def _reap(pid: int) -> None:
    # Only our own children can be reaped; anything else is init's job.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(record: ProcessRecord) -> bool:
    _reap(record.pid)
    fields = _stat_fields(record.pid)
    if fields is None:
        return False
    state, ticks = fields[0], int(fields[19])
    return ticks == record.start_ticks and state not in ("Z", "X")


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
) -> ProcessRecord:
    """Start ``argv`` in its own session (so it survives the CLI), output appended to ``log``.

    posix_spawn rather than subprocess.Popen: the child is meant to outlive this process, and a
    Popen object would have to be kept (or leak a ResourceWarning) for nothing.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        pid = os.posix_spawn(
            argv[0],
            list(argv),
            dict(env) if env is not None else dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ],
            setsid=True,
        )
    except OSError as exc:
        raise PermanentError(f"cannot start {name} ({argv[0]}): {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return ProcessRecord(name=name, pid=pid, start_ticks=start_ticks(pid))


def stop(record: ProcessRecord, *, grace_seconds: float = 10.0) -> bool:
    """Stop the process group of ``record``: SIGTERM, then SIGKILL after the grace period.

    Returns True if something was running.
    """
    if not is_alive(record):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not is_alive(record):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
        for _ in range(100):
            if not is_alive(record):
                break
            time.sleep(0.05)
    return True
