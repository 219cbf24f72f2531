"""
Several children in one task: how many, and what they share.

``job_config.workers`` children run side by side, each with its own pipeline (staging, transfer
threads, child pool, sandbox) as one child has. They share the run: one sequence of claimed
files (so each file is taken by exactly one of them, in listing order), the publisher (output
names are reserved run-wide), the ledger and the tally of results -- each touched under one lock.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.provider_config import setting

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from airflow_byo.results import FileTally
    from airflow_byo.runner.progress import Progress
    from airflow_byo.runtime_config import JobConfig
    from airflow_byo.storage.location import SourceFile

__all__ = ["RunState", "SharedClaims", "max_workers", "worker_count"]


def max_workers() -> int:
    """``[byo] max_workers``: the most children one task runs side by side."""
    raw = setting("max_workers").strip() or "8"
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ByoConfigError(
            f"[byo] max_workers must be a whole number of at least 1, got {raw!r}; "
            "set AIRFLOW__BYO__MAX_WORKERS (or max_workers in the [byo] section of airflow.cfg), e.g. to 4"
        )
    return value


def available_cpus() -> int:
    """CPUs this task may run on (its affinity mask, as a container or ``taskset`` limits it)."""
    return len(os.sched_getaffinity(0))


def worker_count(job: JobConfig, files: int) -> int:
    """
    Children to run for ``files`` files: ``job_config.workers`` (``auto``: the CPUs available,
    one child under fail_fast), never more than the files nor than ``[byo] max_workers``.
    """
    wanted = job.workers
    if wanted == "auto":
        wanted = 1 if job.stops_at_first_failure else available_cpus()
    return max(1, min(wanted, files, max_workers()))


class SharedClaims:
    """
    One iterator of claimed files for all the children of a run, numbered in the order they
    are handed out; safe to pull from several threads (the claims themselves happen inside,
    chunk by chunk, under the lock).
    """

    def __init__(self, claimed: Iterable[SourceFile]) -> None:
        self._files = enumerate(claimed)
        self._lock = threading.Lock()
        self.stopped = threading.Event()  # set: hand out no more files (a failure elsewhere)

    def __iter__(self) -> Iterator[tuple[int, SourceFile]]:
        return self

    def __next__(self) -> tuple[int, SourceFile]:
        if self.stopped.is_set():
            raise StopIteration
        with self._lock:
            return next(self._files)


class RunState:
    """
    What the children of one run update together: the tally, the progress, the counts. Nothing
    here grows with the run's files (issue 24), but for ``handled`` when asked for: the files
    taken so far, which only a run that stops at its first failure needs (the rest are reported
    skipped).
    """

    def __init__(
        self, tally: FileTally, progress: Progress, workers: int, files: int, *, track_handled: bool = False
    ) -> None:
        self.tally = tally
        self.files = files  # the run's files, claimed or not (for "[n/total]" in the log)
        self.progress = progress
        self.lock = threading.RLock()
        self.handled: set[str] | None = set() if track_handled else None  # file urls
        self.per_worker = [0] * workers
