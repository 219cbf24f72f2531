"""
CPU time of a child and everything it started, read by the worker from ``/proc``.

``job_config.cpu_seconds`` is a budget per file. The child's runtime turns it into a profiling
timer and a Python error, but the function runs in that same process: it can ignore ``SIGPROF``
or disarm the timer, and processes it starts have timers of their own. So
the worker measures too: while it waits for a file's answer it sums, every
:data:`CHECK_SECONDS`, the CPU time of the process tree under the child (the launcher's bwrap, the
sandbox's init, the child, its threads and every process still running or already reaped into a
parent's ``cutime``), and kills the child once the file used more than its budget plus
:data:`GRACE_SECONDS` (so the child's own, friendlier error comes first).

Walking the tree costs ~0.6 ms, too much for every file of a run of small ones, so a file's
count starts cheaply: the child process's own CPU time when the file starts (one read of its
``/proc/<pid>/stat``), and the whole tree's only at the first check, half a second into the file.
What other processes of the tree use in that first half second is not counted: the budget is a
little lenient there, never strict.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["CHECK_SECONDS", "GRACE_SECONDS", "CpuWatch", "tree_cpu_seconds"]

CHECK_SECONDS = 0.5
GRACE_SECONDS = 0.5
_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_cpu(pid: int) -> float:
    """utime + stime + cutime + cstime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After "pid (comm)": state is field 3, utime..cstime are fields 14..17.
    return sum(int(value) for value in fields[11:15]) / _TICKS


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                found.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def tree_cpu_seconds(root: int) -> float:
    """The CPU time of ``root`` and all its descendants (live ones, and reaped ones via cutime)."""
    total, stack, seen = 0.0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _stat_cpu(pid)
        stack.extend(_children(pid))
    return total


@dataclass
class _Budget:
    watch: CpuWatch
    limit: float | None
    child_start: float  # the child process's own CPU time when the file started
    next_check: float
    tree_base: float | None = None  # the tree's CPU time at the first check, minus the child's share so far

    def used_up(self) -> bool:
        """Measure now (when a check is due); True once the file used more than its budget."""
        now = time.monotonic()
        if self.limit is None or now < self.next_check:
            return False
        self.next_check = now + CHECK_SECONDS
        total = tree_cpu_seconds(self.watch.root)
        if self.tree_base is None:
            self.tree_base = total - (_stat_cpu(self.watch.child) - self.child_start)
        return total - self.tree_base > self.limit + GRACE_SECONDS


class CpuWatch:
    """
    The CPU budgets of one child's files.

    :param root: the pid the worker started.
    :param depth: how far below it the interpreter running the function is: 2 in the sandbox
        (launcher/bwrap -> the sandbox's init -> the child), 0 unsandboxed.
    """

    def __init__(self, root: int, depth: int) -> None:
        self.root, self._depth = root, depth
        self._child: int | None = None

    @property
    def child(self) -> int:
        if self._child is None:
            pid = self.root
            for _ in range(self._depth):
                kids = sorted(_children(pid))
                pid = kids[0] if kids else pid  # the first child: the sandbox forks nothing else first
            self._child = pid
        return self._child

    def budget(self, limit: float | None) -> _Budget:
        """A file's budget from now on; without a limit it never asks /proc."""
        now = time.monotonic()
        if limit is None:
            return _Budget(self, None, 0.0, float("inf"))
        return _Budget(self, limit, _stat_cpu(self.child), now + CHECK_SECONDS)
