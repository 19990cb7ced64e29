"""fireproof: make bare-metal Kubernetes clusters survive hardware failure."""

# The first code of the `fireproof` command to run: a Ctrl-C from here until `cli.main.main`
# takes over says "interrupted" and exits 130, never a traceback from the middle of an import
# (issue 31: under load the CLI was still importing 0.15 s after start). Only the commands'
# own processes get it: fireproof imported as a library (chaosfireproof, tests) keeps its
# host's Ctrl-C. `_signal`, not `signal`: the C module is loaded with the interpreter, while
# `signal` imports `enum` and `collections`, time in which a Ctrl-C would still be a traceback.
import _signal  # type: ignore[import-not-found]  # CPython's C half of `signal`: no stub
import os as _os
import sys as _sys

_COMMANDS = frozenset({"fireproof", "kubectl-fireproof"})


def _interrupted_while_starting(_signum: int, _frame: object) -> None:
    # Nothing is open yet and nothing needs restoring: leave at once, whatever is importing.
    _os.write(2, b"interrupted\n")
    _os._exit(130)


if (
    getattr(_sys, "argv", None)  # an embedded interpreter may have none
    and _os.path.basename(_sys.argv[0]) in _COMMANDS
    and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
):
    try:  # noqa: SIM105 (contextlib is not loaded yet: importing it widens the window)
        _signal.signal(_signal.SIGINT, _interrupted_while_starting)
    except ValueError:  # not the main thread: not the command starting
        pass
