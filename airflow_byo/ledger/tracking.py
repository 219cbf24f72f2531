"""The ledger as the runner's :class:`~airflow_byo.runner.flow_runner.FileTracker`: claim, renew, settle."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from airflow_byo.faults import crash_point
from airflow_byo.ledger.leases import LeaseKeeper
from airflow_byo.ledger.runs import RunIdentity, register_run, run_ended
from airflow_byo.ledger.state import Ledger

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import TracebackType

    from airflow_byo.ledger.state import Outcome
    from airflow_byo.results import FileResult
    from airflow_byo.storage.location import SourceFile

__all__ = ["LedgerTracker"]

log = logging.getLogger(__name__)


class LedgerTracker:
    """
    Claims files in chunks just before they are processed (so concurrent runs share the work
    instead of one run hoarding it), keeps the claims alive while the run works, records each
    outcome after the outputs are published, and gives back what it claimed but did not
    process when the run stops early.

    The ledger is written by one thread of its own, so a round trip to the ledger (a few
    milliseconds to PostgreSQL) never holds up the children: the next chunk is claimed while
    the current one is worked on, and outcomes are written while the next files are processed.
    Writes happen in the order they are asked for; an error of one is raised by the next call.

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
        # Children side by side settle from several threads: the open claims and the outcomes
        # waiting for their batch are kept consistent under this lock.
        self._lock = threading.Lock()
        # Every claim and settle runs on this one thread, in the order asked (a SQLite ledger
        # has one writer anyway).
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="byo-ledger")
        self._writes: list[Future[None]] = []
        self.settle_batch = settle_batch
        self.settle_seconds = settle_seconds
        self._unsettled: list[Outcome] = []
        self._unsettled_since = 0.0
        self._last_outcome = float("-inf")
        self._flush_timer: threading.Timer | None = None
        self._all_claimed = False  # every chunk claimed and handed out: the last settle flushes

    # -- claims --------------------------------------------------------------------------------
    def claimed(self, files: Sequence[SourceFile]) -> Iterator[SourceFile]:
        """
        ``files`` this run won, claimed a chunk at a time as they are used. The first chunk is
        claimed at once, while the run starts its children (issue 24: it was a round trip after
        them, before the first file). While chunks go quickly, the next one is claimed while the
        current one is worked on, so the claim's round trip is hidden; slow files are never
        claimed ahead (the round trip is nothing next to their work, and other runs may take
        them meanwhile).
        """
        with self._lock:
            self._all_claimed = False
        first = self._writer.submit(self._claim, files[: self.chunk]) if files else None
        return self._claim_as_used(files, first)

    def _claim_as_used(
        self, files: Sequence[SourceFile], ahead: Future[list[SourceFile]] | None
    ) -> Iterator[SourceFile]:
        """:meth:`claimed`'s chunks, the first one (``ahead``) already asked for."""
        start, size, quick = (self.chunk if ahead is not None else 0), self.chunk, False
        while start < len(files) or ahead is not None:
            if ahead is None:
                ahead = self._writer.submit(self._claim, files[start : start + size])
                start += size
            won = ahead.result()
            ahead = None
            began = time.monotonic()
            if quick and start < len(files):
                ahead = self._writer.submit(self._claim, files[start : start + size])
                start += size
            yield from won
            lasted = time.monotonic() - began  # the work on this chunk's files
            quick = lasted < self.claim_seconds
            if quick:
                size = min(size * 2, self.max_chunk)
            elif lasted > 4 * self.claim_seconds:
                size = max(size // 2, self.chunk)
        with self._lock:
            self._all_claimed = True
            if not self._open:  # and every file handed out is settled: nothing comes to batch with
                self._flush()

    def _claim(self, chunk: Sequence[SourceFile]) -> list[SourceFile]:
        won = self.ledger.claim(chunk, self.token, self.lease_seconds)
        crash_point("claimed")
        with self._lock:
            self.taken_elsewhere += len(chunk) - len(won)
            # Held from the claim on, not from when it is yielded: a run that stops early
            # (fail_fast) gives back the rest of its chunk, and the chunk claimed ahead, too.
            self._open.update((file.url, file) for file in won)
        return won

    # -- outcomes ------------------------------------------------------------------------------
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
            self._raise_failed_writes()
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
            # The run's last outcome is written at once: the write overlaps the run's wind-down
            # (children exiting, folders removed) instead of following it (issue 24).
            last = self._all_claimed and not self._open
            if not quick or full or last or now - self._unsettled_since >= self.settle_seconds:
                self._flush()
            elif self._flush_timer is None:
                self._flush_timer = threading.Timer(self.settle_seconds, self._flush_later)
                self._flush_timer.daemon = True
                self._flush_timer.start()

    @property
    def outcomes_waiting(self) -> int:
        """Outcomes waiting for their batch, not yet handed to the ledger thread."""
        with self._lock:
            return len(self._unsettled)

    def flush(self) -> None:
        """Write the outcomes recorded so far to the ledger, and wait until they are written."""
        with self._lock:
            self._flush()
            writes = list(self._writes)
        for write in writes:
            write.exception()  # waits; an error stays for _raise_failed_writes
        with self._lock:
            self._raise_failed_writes()

    def _flush_later(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        """Hand the outcomes waiting for their batch to the ledger thread (under ``_lock``)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._unsettled:
            batch, self._unsettled = self._unsettled, []
            self._writes = [w for w in self._writes if not w.done() or w.exception() is not None]
            self._writes.append(self._writer.submit(self._write, batch))

    def _write(self, batch: list[Outcome]) -> None:
        try:
            self.ledger.settle_many(batch, self.token)
        except Exception as exc:
            log.warning("Could not record %d outcome(s) in the ledger yet (retried): %s", len(batch), exc)
            with self._lock:  # kept, and written with the next batch
                self._unsettled[:0] = batch
            raise

    def _raise_failed_writes(self) -> None:
        """The error of a failed ledger write, once (under ``_lock``); its outcomes are kept."""
        for write in self._writes:
            if write.done() and (error := write.exception()) is not None:
                self._writes.remove(write)
                raise error

    # -- the run -------------------------------------------------------------------------------
    def __enter__(self) -> LedgerTracker:
        register_run(self.ledger, self.run)
        self._keeper.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            try:
                self.flush()  # while the leases are still renewed
            finally:
                self._writer.shutdown(wait=True)  # a claim ahead in flight lands in _open first
                self._keeper.__exit__(kind, exc, tb)
            with self._lock:
                self.ledger.release(self._open.values(), self.token)
                self._open.clear()
        finally:
            run_ended(self.token)
