"""CPU time of benchmark processes from /proc, so a figure survives a noisy machine.

``cpu_seconds(pid)`` is utime + stime of the process (all its threads) plus cutime + cstime (children it
has waited for) plus the same of every live descendant, in seconds. Sampled before and after a phase, the
difference is the CPU the process tree spent on it, however many other processes shared the cores.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cdx.infra.process import proc_stat

TICK = os.sysconf("SC_CLK_TCK")


def _own(fields: list[str]) -> float:
    # fields 14-17: utime, stime, cutime, cstime (clock ticks)
    return sum(int(fields[i]) for i in range(11, 15)) / TICK


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields is not None:
                tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (0.0 once it is gone)."""
    fields = proc_stat(pid)
    if fields is None:
        return 0.0
    total, tree = _own(fields), _children()
    todo = list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        child_fields = proc_stat(child)
        if child_fields is not None:
            total += _own(child_fields)
        todo.extend(tree.get(child, []))
    return total


def sample(pids: Mapping[str, int]) -> dict[str, float]:
    """``cpu_seconds`` of each named process."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds per name between two samples."""
    return {name: round(after.get(name, 0.0) - before.get(name, 0.0), 3) for name in after}


def per_100k(cpu: Mapping[str, float], changes: int) -> float:
    """Summed CPU seconds scaled to 100,000 changes."""
    return sum(cpu.values()) * 100_000 / changes if changes else 0.0
