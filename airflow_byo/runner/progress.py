"""
What a run tells the task log: progress at an interval, and each failed file with its traceback.

Successes are logged one per line only in single-file runs (test mode); a run of thousands of
files reports progress every ``job_config.progress_interval_seconds`` instead of a line per file.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_byo.results import FileOutcome, FileResult, FileTally
    from airflow_byo.runner.child_process import TaskLog
    from airflow_byo.runtime.protocol import Notify

__all__ = ["Progress", "log_file_result", "log_notification"]


class Progress:
    """Logs files done/total, bytes, rate and ETA every ``interval`` seconds (not per file)."""

    def __init__(self, log: TaskLog, interval: float) -> None:
        self.log = log
        self.interval = interval
        self.started = self.last = time.monotonic()

    def update(self, tally: FileTally, total: int) -> None:
        now = time.monotonic()
        done = tally.total
        if now - self.last < self.interval and done < total:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate else float("inf")
        size = tally.bytes_in
        self.log.info(
            "progress: %d/%d files (%d failed), %.1f MB in, %.1f files/s, %.1f MB/s, ETA %.0fs",
            done,
            total,
            tally.count("failed"),
            size / 1e6,
            rate,
            size / 1e6 / elapsed,
            eta,
        )


def log_file_result(log: TaskLog, result: FileResult, outcome: FileOutcome, done: int, total: int) -> None:
    """A failure with its traceback; a success only when the run has one file."""
    if result.status == "processed":
        if total > 1:
            return
        log.info(
            "[%d/%d] %s -> %s (%.3fs)",
            done,
            total,
            result.url,
            ", ".join(result.outputs) or "no output",
            result.seconds,
        )
        return
    log.error("[%d/%d] %s FAILED: %s: %s", done, total, result.url, result.error_type, result.error)
    if outcome.traceback:
        log.error("Traceback from the processor:\n%s", outcome.traceback)


def log_notification(log: TaskLog, url: str, event: Notify) -> None:
    """A ``ctx.notify()`` message in the task log, at its own level."""
    level = logging.getLevelName(event["level"].upper())
    level = level if isinstance(level, int) else logging.INFO
    log.log(level, "notify from %s: %s %s", url, event["message"], event["fields"] or "")
