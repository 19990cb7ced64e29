"""Command-line interface: one module per command group; exit codes live only here."""

import contextlib
import signal
import sys
from types import FrameType


def _quiet_exit(_signum: int, _frame: FrameType | None) -> None:
    # Ctrl-C while the CLI is still loading (before `main` handles it): exit as interrupted,
    # never with a traceback from the middle of an import.
    sys.exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    # (ValueError: imported outside the main thread, so not the CLI starting.)
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, _quiet_exit)
