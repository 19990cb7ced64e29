"""Start-up time of the `fireproof` command: median of 20 runs of `--help`, `--version` and each
command's `--help`, side by side with the eager variant (every command module and the engines
and clients they use imported before parsing, as the CLI did before its commands and their
imports became lazy).

Usage: python benchmarks/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from fireproof.cli.main import COMMANDS

from _lab import FIREPROOF

ENGINES = (
    "fireproof.guard",
    "fireproof.drill",
    "fireproof.report",
    "fireproof.doctor",
    "fireproof.heal",
    "fireproof.fencing",
    "fireproof.inventory",
    "fireproof.kube",
    "fireproof.kube.snapshot",
    "fireproof.wiring",
    "fireproof.lab.lab",
)
EAGER = (
    "import sys, importlib\n"
    "from fireproof.cli.main import COMMANDS, main\n"
    "for module, _a, _s in COMMANDS.values():\n"
    "    importlib.import_module(module)\n"
    f"for module in {ENGINES!r}:\n"
    "    importlib.import_module(module)\n"
    "sys.argv[0] = 'fireproof'\n"
    "main()\n"
)


def median_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    missing = "/nonexistent/kubeconfig"
    # The start of each command: it parses, loads what it needs and answers a missing
    # kubeconfig (or spec, or lab) with its one-line error, before any network call.
    starts = [
        ["doctor", "--kubeconfig", missing],
        ["inventory", "show", "--kubeconfig", missing],
        ["fence", "status", "worker-1", "--kubeconfig", missing],
        ["heal", "node", "worker-1", "--kubeconfig", missing],
        ["guard", "status", "--kubeconfig", missing],
        ["drill", "run", "/nonexistent/spec.yaml", "--kubeconfig", missing],
        ["lab", "status", "--state-dir", "/nonexistent/lab"],
    ]
    cases = [["--help"], ["--version"], *([name, "--help"] for name in COMMANDS), *starts]
    print(f"{'command':<24}{'lazy (s)':>10}{'eager (s)':>11}{'eager/lazy':>12}")
    for case in cases:
        lazy = median_seconds([FIREPROOF, *case], runs)
        eager = median_seconds([sys.executable, "-c", EAGER, *case], runs)
        label = "fireproof " + " ".join(a for a in case if not a.startswith("/"))
        print(f"{label:<24}{lazy:>10.3f}{eager:>11.3f}{eager / lazy:>11.1f}x")


if __name__ == "__main__":
    main()
