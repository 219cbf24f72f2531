"""
Run a processor over files: claim -> fetch -> process -> publish -> settle.

This is the engine behind every way of running a flow (the operator, the decorator, test mode,
the CLI). It knows nothing about Airflow tasks: it takes locations and a resolved flow
(:class:`~airflow_byo.flow.ResolvedFlow`), and returns a :class:`~airflow_byo.results.RunSummary`
built once the files are done. Each step lives in one
place: claims in the :class:`FileTracker` (the ledger), fetching in :mod:`.transfers`, processing
in the :class:`~airflow_byo.runner.child_pool.ChildPool`, publishing in the
:class:`~airflow_byo.storage.publisher.Publisher`, settling back in the tracker.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.faults import crash_point
from airflow_byo.results import FileOutcome, FileResult, FileTally, RunSummary, file_result
from airflow_byo.runner.child_environment import child_environment
from airflow_byo.runner.child_pool import ChildPool, init_request
from airflow_byo.runner.progress import Progress, log_file_result, log_notification
from airflow_byo.runner.publishing import Publishing, publish_behind, publishes_by_rename
from airflow_byo.runner.sandbox import SandboxSpec
from airflow_byo.runner.sandbox_mode import sandbox_mode
from airflow_byo.runner.transfers import fetch_numbered
from airflow_byo.runner.workers import RunState, SharedClaims, worker_count
from airflow_byo.storage.publisher import Publisher

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from airflow_byo.flow import FlowEnvironment, ResolvedFlow
    from airflow_byo.runner.child_process import TaskLog
    from airflow_byo.runner.output_handoff import OutputStaging
    from airflow_byo.runner.sandbox_mode import InEffect
    from airflow_byo.runner.transfers import FetchedFile
    from airflow_byo.runtime.protocol import Notify
    from airflow_byo.runtime_config import JobConfig
    from airflow_byo.storage.location import Location, SourceFile

__all__ = ["FileTracker", "FlowRunner"]


class FileTracker(Protocol):
    """
    Which files a run owns, and what became of them: the seam where the processed-file ledger
    plugs into the runner (see :class:`airflow_byo.ledger.tracking.LedgerTracker`).
    """

    def claimed(self, files: Sequence[SourceFile]) -> Iterator[SourceFile]:
        """Yield the files of ``files`` this run may process (claiming them as it goes)."""
        ...

    def settle(self, file: SourceFile, result: FileResult, quarantined: bool) -> None:
        """Record a file's outcome, after its outputs were published."""
        ...


class _EveryFile:
    """No ledger: every listed file is processed."""

    def claimed(self, files: Sequence[SourceFile]) -> Iterator[SourceFile]:
        return iter(files)

    def settle(self, file: SourceFile, result: FileResult, quarantined: bool) -> None:
        return None


@contextlib.contextmanager
def _transfer_threads(count: int) -> Iterator[ThreadPoolExecutor]:
    """Threads for downloads ahead and uploads behind; stopped before staging is removed."""
    pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="byo-transfer")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class _Run:
    """What the child pipelines of one run share."""

    source: Location
    publisher: Publisher
    claims: SharedClaims
    tracker: FileTracker
    state: RunState
    closing: list[threading.Thread] = field(default_factory=list)  # pools closing behind their pipeline


class FlowRunner:
    """
    Stream files through one processor, in long-lived child processes.

    :param flow: the flow's processor, runtime config, runtime and sandbox settings.
    :param environment: the interpreter of the flow's environment (and the time it took to get).
    :param log: the task's logger; progress, the user's prints and notifications go there.
    :param on_notify: also called with each ``ctx.notify()`` event (file url, event), after it
        was logged: e.g. to deliver it to the flow's notification channels.
    :param quarantine: where ``error_policy: quarantine`` copies failed inputs and their errors.
    :param sandbox: ``"bubblewrap"`` or ``"off"``; by default what ``[byo] sandbox`` gives on
        this worker (``auto``: bubblewrap when it works here).
    """

    def __init__(
        self,
        *,
        flow: ResolvedFlow,
        environment: FlowEnvironment,
        log: TaskLog,
        on_notify: Callable[[str, Notify], None] | None = None,
        quarantine: Location | None = None,
        sandbox: InEffect | None = None,
    ) -> None:
        self.flow = flow
        self.environment = environment
        self.python = environment.python
        self.log = log
        self.on_notify = on_notify
        self.quarantine = quarantine
        if sandbox is None:
            sandbox, warning = sandbox_mode()
            if warning:
                log.warning("%s", warning)
        self.sandbox: InEffect = sandbox
        self._notify_lock = threading.Lock()
        self._notifications_left = self.job.max_notifications_per_run
        self._notifications_dropped = 0

    @property
    def job(self) -> JobConfig:
        return self.flow.job

    def children(self, *, inputs: str, staging: OutputStaging, preview_rows: int = 0) -> ChildPool:
        """
        The child processes of one run (a context manager; the first child starts on entry),
        sandboxed unless the sandbox is off: they may read ``inputs`` (the folder of their staged
        input files) and write only their drop folders in ``staging``. ``preview_rows`` > 0 (test
        mode) has them decode that many rows of binary outputs.
        """
        spec = None
        if self.sandbox == "bubblewrap":
            settings = self.flow.sandbox
            spec = SandboxSpec(
                interpreter=self.python,
                read_only=(inputs, *settings.read_only_paths),
                network=settings.network,
                env=child_environment(),
                max_processes=settings.max_processes,
                max_file_bytes=settings.max_file_bytes,
                max_memory_bytes=settings.max_memory_bytes,
                image=settings.image,
            )
        init = init_request(self.flow.processor, self.flow.config, preview_rows)
        return ChildPool(
            python=self.python,
            init=init,
            job=self.job,
            log=self.log,
            staging=staging,
            sandbox=spec,
            inputs=inputs,
        )

    def summary(self, source: str, destination: str | None, tally: FileTally, **values: Any) -> RunSummary:
        """The summary of a finished run: the flow's, with this runner's sandbox and environment time."""
        return self.flow.summary(
            source,
            destination,
            tally,
            sandbox=self.sandbox,
            environment_seconds=self.environment.seconds,
            **values,
        )

    # -- whole runs ----------------------------------------------------------------------------
    def run(
        self,
        source: Location,
        destination: Location,
        files: Sequence[SourceFile],
        tracker: FileTracker | None = None,
    ) -> RunSummary:
        """
        Process ``files`` of ``source`` and publish their outputs to ``destination``.

        Transfers overlap with processing: up to ``job_config.transfer_concurrency`` inputs are
        downloaded ahead and as many files' outputs uploaded behind, so local disk use stays
        bounded by that many files whatever the size of the run. With a ``tracker`` (the ledger),
        only the files it lets this run claim are processed, and each outcome is recorded after
        the file's outputs were published. ``job_config.workers`` children (see
        :func:`~airflow_byo.runner.workers.worker_count`) each run that pipeline, in threads,
        taking files from one shared sequence of claims.
        """
        tracker = tracker or _EveryFile()
        tally = FileTally(max_insight_keys=self.job.max_insight_keys)
        self._notifications_left, self._notifications_dropped = self.job.max_notifications_per_run, 0
        workers = worker_count(self.job, len(files))
        progress = Progress(self.log, self.job.progress_interval_seconds)
        stops = self.job.stops_at_first_failure
        state = RunState(tally, progress, workers, len(files), track_handled=stops)
        started = time.monotonic()
        closing: list[threading.Thread] = []
        try:
            with Publisher(destination, self.quarantine, lease_seconds=self.job.lease_seconds) as publisher:
                claims = SharedClaims(tracker.claimed(files))  # claim (in chunks, as the run goes)
                run = _Run(source, publisher, claims, tracker, state, closing)
                if workers == 1:
                    self._work(0, run)
                else:
                    self.log.info("Running %d children side by side", workers)
                    self._work_in_parallel(workers, run)
        finally:
            for thread in closing:  # every child gone, every pool's folder removed
                thread.join()
        if self._notifications_dropped:
            self.log.warning(
                "Dropped %d ctx.notify() call(s) beyond job_config.max_notifications_per_run=%d",
                self._notifications_dropped,
                self.job.max_notifications_per_run,
            )
        if tally.count("failed") and state.handled is not None:
            for position, file in enumerate(files):  # what the stop left unprocessed, after the rest
                if file.url not in state.handled:
                    tally.add(file_result(file.url, file.size, None), {}, {}, order=len(files) + position)
        return self.summary(
            source.url,
            destination.url,
            tally,
            files_seen=len(files),
            workers=workers,
            files_per_worker=state.per_worker,
            leftovers_removed=publisher.swept,
            seconds=time.monotonic() - started,
        )

    def _work_in_parallel(self, workers: int, run: _Run) -> None:
        """``workers`` pipelines in threads, one child pool each; the first error stops them all."""
        claims = run.claims
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="byo-worker") as threads:
            running = [threads.submit(self._work, index, run) for index in range(workers)]
            try:
                for future in as_completed(running):
                    if future.exception() is not None:
                        claims.stopped.set()
            finally:
                claims.stopped.set()  # only matters when this thread was interrupted
                # A child dies with the thread that started it (PR_SET_PDEATHSIG, bwrap's
                # --die-with-parent): these threads stay until the children they started and
                # that are closing behind their pipelines have exited on their own.
                for thread in list(run.closing):
                    thread.join()
        for future in running:
            future.result()  # the first worker's error, if any

    def _work(self, worker: int, run: _Run) -> None:
        """
        One child pool's pipeline: take files from the run's claims until there are none (or a
        failure stops the run), each fetched ahead, processed, published behind and settled.
        """
        source, publisher, claims, state = run.source, run.publisher, run.claims, run.state
        depth = self.job.transfer_concurrency
        with (
            source.input_staging() as staging,
            self.children(inputs=staging, staging=publisher.staging) as children,
            _transfer_threads(depth) as transfers,
        ):
            owner = (children.identity.uid, children.identity.gid) if children.identity else None
            fetched = fetch_numbered(transfers, source, claims, staging, depth, owner)
            at_once = publishes_by_rename(publisher)
            uploads: deque[Publishing] = deque()
            current = next(fetched, None)
            while current is not None:
                while uploads and (len(uploads) >= depth or uploads[0].result.done()):
                    self._settle(uploads.popleft(), run, worker)
                if self.job.stops_at_first_failure and self._any_failure(state, uploads):
                    claims.stopped.set()
                    break
                if state.handled is not None:
                    with state.lock:
                        state.handled.add(current.file.url)
                ahead = next(fetched, None)
                last = ahead is None  # no file follows in this pipeline
                outcome = self.process(children, current, ahead=ahead, publisher=publisher, last=last)
                if last:  # its child is not needed any more
                    run.closing.append(children.close_behind())
                with state.lock:  # output names are reserved run-wide
                    publishing = publish_behind(transfers, publisher, current, outcome, at_once=at_once)
                uploads.append(publishing)
                current = ahead
            while uploads:
                self._settle(uploads.popleft(), run, worker)

    # -- process: one file through the child ---------------------------------------------------
    def process(
        self,
        children: ChildPool,
        item: FetchedFile,
        *,
        ahead: FetchedFile | None = None,
        publisher: Publisher | None = None,
        last: bool = False,
    ) -> FileOutcome:
        """
        Run the child on one (downloaded) file, retrying as configured, then quarantine it when
        it failed and ``publisher`` has a quarantine location. The staged input is released
        afterwards. ``ahead`` is queued into the child before waiting, so the child works while
        this file's outputs are published; ``last`` (no file follows) tells the child to exit once
        it has answered, so it winds down while the worker publishes and settles.
        """
        try:
            request = item.request()
        except ByoStorageError as exc:
            return FileOutcome(status="error", error_type="ByoStorageError", error=str(exc))
        staged = item.staged.result()
        try:
            children.start(request)
            if last:
                children.finish()
            elif ahead is not None and children.can_queue_ahead():
                with contextlib.suppress(ByoStorageError):  # reported when that file's turn comes
                    children.queue_ahead(ahead.request())
            outcome = children.process(request, item.file.url)
            crash_point("processed")
            if not outcome.ok and publisher is not None and publisher.quarantine_location is not None:
                outcome.quarantined_to = publisher.quarantine(item.file, staged, outcome)
                self.log.warning("Quarantined %s to %s", item.file.url, outcome.quarantined_to)
        finally:
            staged.release()
        self._notify(item.file.url, outcome)
        return outcome

    def _notify(self, url: str, outcome: FileOutcome) -> None:
        """Log and hand on a file's notifications, within ``max_notifications_per_run``."""
        with self._notify_lock:  # children side by side: notifications one at a time
            for event in outcome.notifications:
                if self._notifications_left <= 0:
                    self._notifications_dropped += 1
                    continue
                self._notifications_left -= 1
                log_notification(self.log, url, event)
                if self.on_notify is not None:
                    self.on_notify(url, event)

    # -- settle: the outcome into the ledger and the tally -------------------------------------
    def _settle(self, pending: Publishing, run: _Run, worker: int) -> None:
        tracker, state = run.tracker, run.state
        result = pending.result.result()
        outcome = pending.outcome
        with state.lock:
            tracker.settle(pending.item.file, result, result.status == "quarantined")
            crash_point("committed")
            state.tally.add(
                result, outcome.insights, outcome.counters, len(outcome.notifications), order=pending.item.seq
            )
            state.per_worker[worker] += 1
            log_file_result(self.log, result, outcome, pending.item.seq + 1, state.files)
            state.progress.update(state.tally, state.files)

    @staticmethod
    def _any_failure(state: RunState, uploads: deque[Publishing]) -> bool:
        """A failure so far, counting files whose result is known but not yet in the tally."""
        with state.lock:
            if state.tally.count("failed"):
                return True
        return any(p.result.done() and p.result.result().status == "failed" for p in uploads)
