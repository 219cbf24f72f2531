"""The ledger as the runner's :class:`~airflow_byo.runner.flow_runner.FileTracker`: claim, renew, settle."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from airflow_byo.faults import crash_point
from airflow_byo.ledger.leases import LeaseKeeper
from airflow_byo.ledger.runs import RunIdentity, register_run, run_ended
from airflow_byo.ledger.state import Ledger

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import TracebackType

    from airflow_byo.ledger.state import Outcome
    from airflow_byo.storage.location import SourceFile
    from airflow_byo.summary import FileResult

__all__ = ["LedgerTracker"]

log = logging.getLogger(__name__)


class LedgerTracker:
    """
    Claims files in chunks just before they are processed (so concurrent runs share the work
    instead of one run hoarding it), keeps the claims alive while the run works, records
    each outcome after the outputs are published, and gives back what it claimed but did not
    process when the run stops early.

    Use as a context manager around :meth:`FlowRunner.run`; entering it records the run (who
    holds its claims: see :mod:`airflow_byo.ledger.runs`).

    :param chunk: files in the first claim, and the fewest in any claim.
    :param max_chunk: the most files in one claim.
    :param claim_seconds: the work one claim should hold. A chunk that was used up faster than
        this doubles the next one (light files are claimed in a few transactions, not one per
        16 files); one that lasted four times longer halves it, down to ``chunk``.
    :param run: this run (default: this process, outside any task instance).
    :param settle_batch: outcomes written to the ledger in one transaction, at most.
    :param settle_seconds: how long an outcome may wait for its batch; an outcome that comes
        later than this after the previous one is written at once.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        lease_seconds: float,
        chunk: int = 16,
        max_chunk: int = 256,
        claim_seconds: float = 1.0,
        run: RunIdentity | None = None,
        settle_batch: int = 64,
        settle_seconds: float = 1.0,
    ) -> None:
        self.ledger = ledger
        self.lease_seconds = lease_seconds
        self.chunk = chunk
        self.max_chunk = max(chunk, max_chunk)
        self.claim_seconds = claim_seconds
        self.run = run or RunIdentity.current(ledger.flow_id)
        self.token = self.run.token
        self._open: dict[str, SourceFile] = {}
        self.taken_elsewhere = 0
        self._keeper = LeaseKeeper(ledger, self.token, lease_seconds)
        # Children side by side claim and settle from several threads: one ledger write at a time
        # (a SQLite ledger has one writer anyway), and the open claims kept consistent.
        self._lock = threading.Lock()
        self.settle_batch = settle_batch
        self.settle_seconds = settle_seconds
        self._unsettled: list[Outcome] = []
        self._unsettled_since = 0.0
        self._last_outcome = float("-inf")
        self._flush_timer: threading.Timer | None = None

    def claimed(self, files: Sequence[SourceFile]) -> Iterator[SourceFile]:
        start, size = 0, self.chunk
        while start < len(files):
            chunk = files[start : start + size]
            start += size
            began = time.monotonic()
            with self._lock:
                won = self.ledger.claim(chunk, self.token, self.lease_seconds)
                crash_point("claimed")
                self.taken_elsewhere += len(chunk) - len(won)
                # Held from the claim on, not from when it is yielded: a run that stops early
                # (fail_fast) gives back the rest of its chunk too.
                self._open.update((file.url, file) for file in won)
            yield from won
            lasted = time.monotonic() - began  # the claim, and the work on its files
            if lasted < self.claim_seconds:
                size = min(size * 2, self.max_chunk)
            elif lasted > 4 * self.claim_seconds:
                size = max(size // 2, self.chunk)

    def settle(self, file: SourceFile, result: FileResult, quarantined: bool) -> None:
        # Recorded in batches (one transaction per ``settle_batch`` files or ``settle_seconds``):
        # a ledger write per file would be most of the worker-side cost of a light file. Safe: an
        # outcome not yet written when the worker dies leaves the file claimed, so it is processed
        # again after its lease and its outputs are published again, atomically, under the same
        # names -- never lost, never duplicated.
        if result.status == "processed":
            outcome = Ledger.done_outcome(file, result.outputs)
        else:
            error = f"{result.error_type}: {result.error}"
            outcome = Ledger.failed_outcome(file, error, quarantined=quarantined)
        with self._lock:
            now = time.monotonic()
            # Batching pays only while outcomes come quickly. A slow file's outcome is written at
            # once, so a worker killed during the next file never repeats work it had finished;
            # a quick one waits at most ``settle_seconds`` (a timer writes it if nothing follows).
            quick = now - self._last_outcome < self.settle_seconds
            self._last_outcome = now
            if not self._unsettled:
                self._unsettled_since = now
            self._unsettled.append(outcome)
            self._open.pop(file.url, None)
            full = len(self._unsettled) >= self.settle_batch
            if not quick or full or now - self._unsettled_since >= self.settle_seconds:
                self._flush()
            elif self._flush_timer is None:
                self._flush_timer = threading.Timer(self.settle_seconds, self._flush_later)
                self._flush_timer.daemon = True
                self._flush_timer.start()

    def flush(self) -> None:
        """Write the outcomes recorded so far to the ledger."""
        with self._lock:
            self._flush()

    def _flush_later(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 -- kept, and written by the next settle or at exit
            log.warning("Could not record outcomes in the ledger yet (retried): %s", exc)

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._unsettled:
            self.ledger.settle_many(self._unsettled, self.token)
            self._unsettled = []

    def __enter__(self) -> LedgerTracker:
        register_run(self.ledger, self.run)
        self._keeper.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.flush()  # while the leases are still renewed
        finally:
            self._keeper.__exit__(kind, exc, tb)
        try:
            with self._lock:
                self.ledger.release(self._open.values(), self.token)
                self._open.clear()
        finally:
            run_ended(self.token)
