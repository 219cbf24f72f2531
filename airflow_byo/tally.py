"""
What a run adds up file by file, in memory that does not grow with the run (issue 24): a run of a
million files keeps the first results of each status (for the summary's file list, the failures
a task error names, and lineage), counts, sums and a bounded sample of durations -- never a
result per file. Standard library only; :mod:`airflow_byo.results` re-exports :class:`FileTally`.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import statistics
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_byo.results import FileResult

__all__ = ["MAX_RUN_INSIGHT_BYTES", "RESULTS_KEPT", "DurationSample", "FileTally", "FirstResults"]

#: Results kept per status, the run's first ones: the summary lists the first 100 of any status
#: and lineage the first 1,000 processed files (``airflow_byo.lineage.MAX_LINEAGE_DATASETS``).
RESULTS_KEPT = 1000
#: The run's insights as JSON (the summary is an XCom): values that would pass it are dropped.
MAX_RUN_INSIGHT_BYTES = 1024 * 1024
#: Durations behind ``seconds_per_file_p50``: all of them up to this many files, then a uniform
#: random sample of this size (reservoir sampling), so the median of a longer run is approximate.
DURATIONS_KEPT = 20_000


class FirstResults:
    """The ``limit`` results first in the run's order (``order``, then arrival), in that order."""

    def __init__(self, limit: int = RESULTS_KEPT) -> None:
        self.limit = limit
        self._heap: list[tuple[int, int, FileResult]] = []  # (-order, -arrival, result): a max-heap

    def add(self, result: FileResult, order: int, arrival: int) -> None:
        entry = (-order, -arrival, result)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, entry)
        elif entry[:2] > self._heap[0][:2]:  # earlier than the latest kept one
            heapq.heapreplace(self._heap, entry)

    def entries(self) -> list[tuple[int, int, FileResult]]:
        return list(self._heap)

    def sorted(self) -> list[FileResult]:
        return _in_order(self._heap)


def _in_order(entries: list[tuple[int, int, FileResult]]) -> list[FileResult]:
    return [result for *_, result in sorted(entries, key=lambda entry: entry[:2], reverse=True)]


class DurationSample:
    """
    Seconds per file: the exact maximum, and the median of every duration up to
    :data:`DURATIONS_KEPT` files, of a uniform random sample of that many beyond (reservoir
    sampling with a fixed seed: the same run gives the same figure).
    """

    def __init__(self, kept: int = DURATIONS_KEPT) -> None:
        self.kept = kept
        self.count = 0
        self.max: float | None = None
        self._sample = array("d")
        self._random = random.Random(24)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.max = seconds if self.max is None else max(self.max, seconds)
        if len(self._sample) < self.kept:
            self._sample.append(seconds)
        elif (slot := self._random.randrange(self.count)) < self.kept:
            self._sample[slot] = seconds

    @property
    def exact(self) -> bool:
        """Whether :attr:`median` is over every duration (not a sample)."""
        return self.count <= self.kept

    @property
    def median(self) -> float | None:
        return statistics.median(self._sample) if self._sample else None


@dataclass
class FileTally:
    """
    What a run adds up file by file: counts and sums, the first results of each status, the
    durations (:class:`DurationSample`), insights (the run's last file wins) and counters.
    """

    #: Distinct insight and counter names kept (``job_config.max_insight_keys``); values of new
    #: names beyond it, or that would take the insights past MAX_RUN_INSIGHT_BYTES, are dropped.
    max_insight_keys: int = 1000
    insights: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    insights_dropped: int = 0
    notifications: int = 0
    #: Files per status, all of them.
    counts: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0  # of the files read (not skipped)
    bytes_out: int = 0  # of processed files' outputs
    records_out: int | None = None  # of processed files' outputs that count records
    outputs_written: int = 0
    durations: DurationSample = field(default_factory=DurationSample)
    #: Results kept per status (the run's first ones).
    results_kept: int = RESULTS_KEPT
    _first: dict[str, FirstResults] = field(default_factory=dict, repr=False)
    _arrivals: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    _insight_bytes: dict[str, int] = field(default_factory=dict, repr=False)
    _insight_total: int = field(default=0, repr=False)
    _insight_order: dict[str, int] = field(default_factory=dict, repr=False)

    def add(
        self,
        result: FileResult,
        insights: dict[str, Any],
        counters: dict[str, float],
        notifications: int = 0,
        order: int = 0,
    ) -> None:
        """
        Record one file; counters add up, and an insight keeps the value of the file latest in the
        run's order (``order``: its place; children side by side finish files out of order).
        """
        self._count(result)
        if result.status not in self._first:
            self._first[result.status] = FirstResults(self.results_kept)
        first = self._first[result.status]
        first.add(result, order, next(self._arrivals))
        self.notifications += notifications
        for name, value in insights.items():
            self._insight(name, value, order)
        for name, value in counters.items():
            if name not in self.counters and not self._room_for_a_name():
                self.insights_dropped += 1
                continue
            self.counters[name] = self.counters.get(name, 0) + value

    def _count(self, result: FileResult) -> None:
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if result.status == "skipped":
            return
        self.bytes_in += result.size
        self.durations.add(result.seconds)
        if result.status == "processed":
            self.bytes_out += result.bytes_out
            self.outputs_written += len(result.outputs)
            if result.records_out is not None:
                self.records_out = (self.records_out or 0) + result.records_out

    def _insight(self, name: str, value: Any, order: int) -> None:
        if order < self._insight_order.get(name, order):
            return  # a later file of the run set it already
        self._insight_order[name] = order
        size = len(json.dumps(value, default=str))
        total = self._insight_total - self._insight_bytes.get(name, 0) + size
        if (name not in self.insights and not self._room_for_a_name()) or total > MAX_RUN_INSIGHT_BYTES:
            self.insights_dropped += 1
            return
        self.insights[name] = value
        self._insight_bytes[name], self._insight_total = size, total

    def _room_for_a_name(self) -> bool:
        return len(self.insights) + len(self.counters) < self.max_insight_keys

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)

    @property
    def total(self) -> int:
        """Files recorded, of every status."""
        return sum(self.counts.values())

    @property
    def files(self) -> list[FileResult]:
        """
        The run's first results in its order: at least its first :data:`RESULTS_KEPT` (1,000)
        results, and its first 1,000 of each status.
        """
        return _in_order([entry for first in self._first.values() for entry in first.entries()])

    @property
    def failed(self) -> list[FileResult]:
        """
        The run's first failed results (up to 1,000), in its order; :meth:`count` has them all.
        Known as soon as a failed file is added: ``fail_fast`` asks after each file.
        """
        first = self._first.get("failed")
        return first.sorted() if first else []
