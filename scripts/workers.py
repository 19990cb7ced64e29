"""How many pytest workers this machine runs `make test` with, and why.

The rule: two labs per usable core, and no more labs than fit in memory at 3 GiB each, at least
one. A lab mostly waits on timers (leases, grace periods, the kubelets' heartbeats), so two
share a core well; a third per core made the load average 3-4 per core on a 2-core machine,
where a slow start-up cost more than the overlap gained (issue 31). Usable cores are the ones
this process may run on (`taskset`) under the cgroup's CPU quota; memory is what is available
now, under the cgroup's limit.

Prints the number; `--explain` prints the rule with this machine's figures on stderr.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

LABS_PER_CORE = 2
GIB_PER_LAB = 3


def usable_cores() -> float:
    cores: float = len(os.sched_getaffinity(0))
    try:  # cgroup v2: "max 100000" or "150000 100000" (quota, period)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return cores


def available_gib() -> float:
    available = math.inf
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            available = min(available, (int(limit) - int(used)) / 2**30)
    except (OSError, ValueError):
        pass
    return available


def workers() -> tuple[int, str]:
    cores, gib = usable_cores(), available_gib()
    by_cores = max(1, math.floor(cores * LABS_PER_CORE))
    by_memory = max(1, math.floor(gib / GIB_PER_LAB)) if gib != math.inf else by_cores
    chosen = min(by_cores, by_memory)
    why = (
        f"{chosen} test workers: {LABS_PER_CORE} labs per core x {cores:g} usable cores = "
        f"{by_cores}, {GIB_PER_LAB} GiB per lab in {gib:.1f} GiB available = {by_memory}"
    )
    return chosen, why


if __name__ == "__main__":
    count, why = workers()
    if "--explain" in sys.argv:
        print(why, file=sys.stderr)
    print(count)
