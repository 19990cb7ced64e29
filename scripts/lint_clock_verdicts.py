"""Refuse tests whose verdict is a reading of the wall clock.

A machine slower than the author's makes every elapsed time longer, so `assert took <= 9`
passes on a quiet laptop and fails on a loaded CI runner (issue 31). Speed belongs in
`benchmarks/`; a test asserts behaviour (an order, a count, a state), and bounds its waits
with generous timeouts that are never the verdict.

Flagged: an `assert` whose comparison (`<`, `<=`, `>`, `>=`) holds an elapsed real time: a
difference with a reading of the real clock in it (`time.monotonic()`, `time.time()`,
`perf_counter()`, `loop.time()`, `datetime.now()`), directly or through a name bound to one in
the same function. An instant compared with recorded stamps is an order and passes. Fake
clocks (`clock.time()`) are injected and advance only when told: not the wall clock, not flagged.

Usage: lint_clock_verdicts.py PATH... ; exit 1 with one `file:line: ...` per finding.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

CLOCK_MODULES = {"time", "datetime", "dt"}
CLOCK_FUNCTIONS = {"monotonic", "monotonic_ns", "time", "time_ns", "perf_counter", "now", "utcnow"}
ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _is_clock_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in {"monotonic", "monotonic_ns", "perf_counter"}
    if not isinstance(func, ast.Attribute) or func.attr not in CLOCK_FUNCTIONS:
        return False
    owner = func.value
    # time.monotonic(), dt.datetime.now(), loop.time(), asyncio.get_running_loop().time()
    if isinstance(owner, ast.Name):
        return owner.id in CLOCK_MODULES or (owner.id == "loop" and func.attr == "time")
    if isinstance(owner, ast.Attribute):
        return owner.attr == "datetime"
    return isinstance(owner, ast.Call) and "loop" in ast.unparse(owner.func)


def _clock_operand(node: ast.AST, elapsed: set[str]) -> bool:
    """A real clock reading or an elapsed time, in plain arithmetic (not through a call)."""
    if _is_clock_call(node):
        return True
    if isinstance(node, ast.Name):
        return node.id in elapsed
    if isinstance(node, ast.BinOp):
        return _clock_operand(node.left, elapsed) or _clock_operand(node.right, elapsed)
    if isinstance(node, ast.UnaryOp):
        return _clock_operand(node.operand, elapsed)
    return False


def _is_elapsed(node: ast.AST, elapsed: set[str]) -> bool:
    """A difference with a real clock reading in it (or a name already holding one)."""
    if isinstance(node, ast.Name):
        return node.id in elapsed
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Sub) and (
            _clock_operand(node.left, elapsed) or _clock_operand(node.right, elapsed)
        ):
            return True
        return _is_elapsed(node.left, elapsed) or _is_elapsed(node.right, elapsed)
    if isinstance(node, ast.UnaryOp):
        return _is_elapsed(node.operand, elapsed)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _is_elapsed(node.func.value, elapsed)  # (now - then).total_seconds()
    return False


def _elapsed_names(function: ast.AST) -> set[str]:
    """Names bound, anywhere in the function, to an elapsed real time (to a fixed point).
    An instant (`since = time.time()`) compared with recorded stamps is an order, not a speed,
    so only differences count."""
    elapsed: set[str] = set()
    while True:
        before = len(elapsed)
        for node in ast.walk(function):
            if not isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign) or not node.value:
                continue
            if _is_elapsed(node.value, elapsed) or (
                isinstance(node, ast.AugAssign) and _clock_operand(node.value, elapsed)
            ):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    elapsed |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        if len(elapsed) == before:
            return elapsed


def findings(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))]
    seen: set[int] = set()
    for scope in scopes:
        elapsed = _elapsed_names(scope) if scope is not tree else set()
        for node in ast.walk(scope):
            if not isinstance(node, ast.Assert) or node.lineno in seen:
                continue
            for compare in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
                operands = [compare.left, *compare.comparators]
                if any(isinstance(op, ORDERING) for op in compare.ops) and any(
                    _is_elapsed(o, elapsed) for o in operands
                ):
                    seen.add(node.lineno)
                    yield (
                        f"{path}:{node.lineno}: an assert on elapsed real time; assert the "
                        "behaviour (order, count, state) and move the figure to benchmarks/"
                    )
                    break


def main(argv: list[str]) -> int:
    files = [f for arg in argv for f in (sorted(Path(arg).rglob("*.py")) or [Path(arg)])]
    found = [line for f in files for line in findings(f)]
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
