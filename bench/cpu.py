"""Where the CPU went during a measured load: per process tree, and the machine's total.

Read from /proc (utime + stime of every process in a tree, and /proc/stat), so a scenario
can say which process was the bottleneck: e.g. "ingress 2 x 95 %, rabbitmq 60 %".
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out = [pid]
    index = 0
    while index < len(out):
        current = out[index]
        index += 1
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                out += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _machine_busy() -> float:
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK


class CpuMeter:
    """CPU used by named process trees between `start()` and `stop()`, in % of one core.

    `roots()` is asked at both ends: a process started in between counts from zero.
    """

    def __init__(self, roots: Callable[[], dict[str, list[int]]]) -> None:
        self._roots = roots
        self._before: dict[int, float] = {}
        self._started = 0.0
        self._busy = 0.0

    def _snapshot(self) -> dict[int, float]:
        return {
            pid: _cpu_seconds(pid) for pids in self._roots().values() for root in pids for pid in tree(root)
        }

    def start(self) -> None:
        self._before = self._snapshot()
        self._busy = _machine_busy()
        self._started = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Role -> % of one core (all of the role's process trees together); plus "machine"."""
        after = self._snapshot()
        elapsed = max(time.monotonic() - self._started, 1e-6)
        out: dict[str, float] = {}
        for role, roots in self._roots().items():
            pids = {pid for root in roots for pid in tree(root)}
            used = sum(after.get(pid, 0.0) - self._before.get(pid, 0.0) for pid in pids)
            out[role] = round(100 * used / elapsed)
        out["machine"] = round(100 * (_machine_busy() - self._busy) / elapsed)
        return out
