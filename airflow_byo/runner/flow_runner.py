"""
Run a processor over files: claim -> fetch -> process -> publish -> settle.

This is the engine behind every way of running a flow (the operator, the decorator, test mode,
the CLI). It knows nothing about Airflow tasks: it takes locations, a processor and a
configuration, and returns a :class:`~airflow_byo.summary.RunSummary`. Each step lives in one
place: claims in the :class:`FileTracker` (the ledger), fetching in :mod:`.transfers`, processing
in the :class:`~airflow_byo.runner.child_pool.ChildPool`, publishing in the
:class:`~airflow_byo.storage.publisher.Publisher`, settling back in the tracker.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.faults import crash_point
from airflow_byo.outcomes import FileOutcome
from airflow_byo.runner.child_pool import ChildPool, init_request
from airflow_byo.runner.child_process import child_environment
from airflow_byo.runner.output_handoff import discard_outputs
from airflow_byo.runner.progress import Progress, log_file_result, log_notification
from airflow_byo.runner.sandbox import Network, SandboxSpec, sandbox_mode
from airflow_byo.runner.transfers import fetch_numbered
from airflow_byo.runner.workers import RunState, SharedClaims, worker_count
from airflow_byo.storage.publisher import Publisher
from airflow_byo.summary import FileResult, RunSummary

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from airflow_byo.flow_config import RuntimeConfig
    from airflow_byo.processor import ProcessorSource
    from airflow_byo.runner.child_process import TaskLog
    from airflow_byo.runner.output_handoff import OutputStaging
    from airflow_byo.runner.sandbox import InEffect
    from airflow_byo.runner.transfers import FetchedFile
    from airflow_byo.runtime.protocol import Notify
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


@dataclass
class _Publishing:
    """A processed file whose outputs may still be uploading."""

    item: FetchedFile
    result: FileResult
    outcome: FileOutcome
    upload: Future[None]


def _publishes_by_rename(publisher: Publisher) -> bool:
    """Whether outputs are staged on the local destination's own file system (published by rename)."""
    if not publisher.destination.is_local:
        return False
    try:
        return os.stat(publisher.staging_dir).st_dev == os.stat(publisher.destination.url).st_dev
    except OSError:
        return False


class FlowRunner:
    """
    Stream files through one processor, in long-lived child processes.

    :param processor: the function to run (see :func:`airflow_byo.processor.resolve_processor`).
    :param config: the validated runtime configuration.
    :param python: interpreter of the flow's environment.
    :param log: the task's logger; progress, the user's prints and notifications go there.
    :param on_notify: also called with each ``ctx.notify()`` event (file url, event), after it
        was logged: e.g. to deliver it to the flow's notification channels.
    :param quarantine: where ``error_policy: quarantine`` copies failed inputs and their errors.
    :param sandbox: ``"bubblewrap"`` or ``"off"``; by default what ``[byo] sandbox`` gives on
        this worker (``auto``: bubblewrap when it works here).
    :param read_only_paths: more folders the sandboxed function may read (a runtime's reference data).
    """

    def __init__(
        self,
        *,
        processor: ProcessorSource,
        config: RuntimeConfig,
        python: str,
        log: TaskLog,
        on_notify: Callable[[str, Notify], None] | None = None,
        quarantine: Location | None = None,
        sandbox: InEffect | None = None,
        read_only_paths: Sequence[str] = (),
    ) -> None:
        self.processor = processor
        self.config = config
        self.job = config.job_config
        self.python = python
        self.log = log
        self.on_notify = on_notify
        self.quarantine = quarantine
        if sandbox is None:
            sandbox, warning = sandbox_mode()
            if warning:
                log.warning("%s", warning)
        self.sandbox: InEffect = sandbox
        self.read_only_paths = tuple(read_only_paths)
        self._notify_lock = threading.Lock()
        self._notifications_left = self.job.max_notifications_per_run
        self._notifications_dropped = 0

    def children(self, *, inputs: str, staging: OutputStaging, preview_rows: int = 0) -> ChildPool:
        """
        The child processes of one run (a context manager; the first child starts on entry),
        sandboxed unless the sandbox is off: they may read ``inputs`` (the folder of their staged
        input files) and write only their drop folders in ``staging``. ``preview_rows`` > 0 (test
        mode) has them decode that many rows of binary outputs.
        """
        spec = None
        job = self.job
        if self.sandbox == "bubblewrap":
            network: Network = "off" if not job.network else ("host" if job.host_loopback else "user")
            spec = SandboxSpec(
                interpreter=self.python,
                read_only=(inputs, *self.read_only_paths),
                network=network,
                env=child_environment(),
                max_processes=job.max_processes,
                max_file_bytes=job.max_output_mb * 1024 * 1024 if job.max_output_mb else None,
                max_memory_bytes=job.max_memory_mb * 1024 * 1024 if job.max_memory_mb else None,
            )
        init = init_request(self.processor, self.config, preview_rows)
        return ChildPool(
            python=self.python, init=init, job=job, log=self.log, staging=staging, sandbox=spec, inputs=inputs
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
        summary = RunSummary(
            source=source.url,
            destination=destination.url,
            files_seen=len(files),
            sandbox=self.sandbox,
            max_insight_keys=self.job.max_insight_keys,
        )
        self._notifications_left, self._notifications_dropped = self.job.max_notifications_per_run, 0
        workers = worker_count(self.job, len(files))
        summary.workers = workers
        state = RunState(summary, Progress(self.log, self.job.progress_interval_seconds), workers)
        started = time.monotonic()
        with Publisher(destination, self.quarantine, lease_seconds=self.job.lease_seconds) as publisher:
            claims = SharedClaims(tracker.claimed(files))  # claim (in chunks, as the run goes)
            if workers == 1:
                self._work(0, source, publisher, claims, tracker, state)
            else:
                self.log.info("Running %d children side by side", workers)
                self._work_in_parallel(workers, source, publisher, claims, tracker, state)
        summary.leftovers_removed = publisher.swept
        if self._notifications_dropped:
            self.log.warning(
                "Dropped %d ctx.notify() call(s) beyond job_config.max_notifications_per_run=%d",
                self._notifications_dropped,
                self.job.max_notifications_per_run,
            )
        summary.files.sort(key=lambda result: state.order.get(result.url, 0))
        summary.files_per_worker = state.per_worker
        if self.job.error_policy == "fail_fast" and summary.failed:
            for file in files:
                if file.url not in state.handled:
                    summary.add(FileResult(url=file.url, status="skipped", size=file.size), {}, {})
        summary.seconds = time.monotonic() - started
        return summary

    def _work_in_parallel(
        self,
        workers: int,
        source: Location,
        publisher: Publisher,
        claims: SharedClaims,
        tracker: FileTracker,
        state: RunState,
    ) -> None:
        """``workers`` pipelines in threads, one child pool each; the first error stops them all."""
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="byo-worker") as threads:
            running = [
                threads.submit(self._work, index, source, publisher, claims, tracker, state)
                for index in range(workers)
            ]
            try:
                for future in as_completed(running):
                    if future.exception() is not None:
                        claims.stopped.set()
            finally:
                claims.stopped.set()  # only matters when this thread was interrupted
        for future in running:
            future.result()  # the first worker's error, if any

    def _work(
        self,
        worker: int,
        source: Location,
        publisher: Publisher,
        claims: SharedClaims,
        tracker: FileTracker,
        state: RunState,
    ) -> None:
        """
        One child pool's pipeline: take files from ``claims`` until there are none (or a failure
        stops the run), each fetched ahead, processed, published behind and settled.
        """
        depth = self.job.transfer_concurrency
        with (
            source.input_staging() as staging,
            self.children(inputs=staging, staging=publisher.staging) as children,
            _transfer_threads(depth) as transfers,
        ):
            owner = (children.identity.uid, children.identity.gid) if children.identity else None
            fetched = fetch_numbered(transfers, source, claims, staging, depth, owner)
            at_once = _publishes_by_rename(publisher)
            uploads: deque[_Publishing] = deque()
            current = next(fetched, None)
            while current is not None:
                while uploads and (len(uploads) >= depth or uploads[0].upload.done()):
                    self._settle(uploads.popleft(), tracker, state, worker)
                if self.job.error_policy == "fail_fast" and self._any_failure(state, uploads):
                    claims.stopped.set()
                    break
                with state.lock:
                    state.handled.add(current.file.url)
                    state.order[current.file.url] = current.seq
                ahead = next(fetched, None)
                outcome = self.process(children, current, ahead=ahead, publisher=publisher)
                with state.lock:  # output names are reserved run-wide
                    publishing = self._publish_behind(transfers, publisher, current, outcome, at_once)
                uploads.append(publishing)
                current = ahead
            while uploads:
                self._settle(uploads.popleft(), tracker, state, worker)

    # -- process: one file through the child ---------------------------------------------------
    def process(
        self,
        children: ChildPool,
        item: FetchedFile,
        *,
        ahead: FetchedFile | None = None,
        publisher: Publisher | None = None,
    ) -> FileOutcome:
        """
        Run the child on one (downloaded) file, retrying as configured, then quarantine it if
        the policy says so (``publisher`` given). The staged input is released afterwards.
        ``ahead`` is queued into the child before waiting, so the child works while this file's
        outputs are published.
        """
        try:
            request = item.request()
        except ByoStorageError as exc:
            return FileOutcome(status="error", error_type="ByoStorageError", error=str(exc))
        staged = item.staged.result()
        try:
            children.start(request)
            if ahead is not None and children.can_queue_ahead():
                with contextlib.suppress(ByoStorageError):  # reported when that file's turn comes
                    children.queue_ahead(ahead.request())
            outcome = children.process(request, item.file.url)
            crash_point("processed")
            if not outcome.ok and publisher is not None and self.job.error_policy == "quarantine":
                url = publisher.quarantine(item.file, staged, outcome)
                self.log.warning("Quarantined %s to %s", item.file.url, url)
        finally:
            staged.release()
        with self._notify_lock:  # children side by side: notifications one at a time
            for event in outcome.notifications:
                if self._notifications_left <= 0:
                    self._notifications_dropped += 1
                    continue
                self._notifications_left -= 1
                log_notification(self.log, item.file.url, event)
                if self.on_notify is not None:
                    self.on_notify(item.file.url, event)
        return outcome

    # -- publish: outputs to the destination, in a transfer thread -----------------------------
    def _publish_behind(
        self,
        transfers: ThreadPoolExecutor,
        publisher: Publisher,
        item: FetchedFile,
        outcome: FileOutcome,
        at_once: bool = False,
    ) -> _Publishing:
        """
        Start publishing one file's outputs: in a transfer thread, or in this thread when
        ``at_once`` (a rename costs less than handing it to a thread, and the child is busy
        with the next file meanwhile).
        """
        result = FileResult(url=item.file.url, status="failed", size=item.file.size, seconds=outcome.seconds)
        pending = _Publishing(item, result, outcome, Future())
        clash = publisher.reserve(item.file.url, outcome.outputs) if outcome.ok else None
        if outcome.ok and clash is None:
            if not at_once:
                pending.upload = transfers.submit(self._publish, publisher, pending)
                return pending
            self._publish(publisher, pending)
            pending.upload.set_result(None)
            return pending
        if clash is not None:
            result.error_type, result.error = "OutputNameClash", clash
            discard_outputs(outcome.outputs)
        else:
            result.error_type, result.error = outcome.error_type, outcome.error
            if outcome.quarantined:
                result.status = "quarantined"
        pending.upload.set_result(None)
        return pending

    @staticmethod
    def _publish(publisher: Publisher, pending: _Publishing) -> None:
        """Publish one file's outputs; its result says how it went."""
        result = pending.result
        try:
            urls = publisher.publish(pending.outcome.outputs)
        except ByoStorageError as exc:
            result.error_type, result.error = "ByoStorageError", str(exc)
            return
        for output, url in zip(pending.outcome.outputs, urls, strict=True):
            result.add_output(output, url)
        result.status = "processed"

    # -- settle: the outcome into the ledger and the summary -----------------------------------
    def _settle(self, pending: _Publishing, tracker: FileTracker, state: RunState, worker: int) -> None:
        pending.upload.result()
        summary = state.summary
        with state.lock:
            tracker.settle(pending.item.file, pending.result, pending.outcome.quarantined)
            crash_point("committed")
            summary.add(pending.result, pending.outcome.insights, pending.outcome.counters)
            summary.notifications += len(pending.outcome.notifications)
            state.per_worker[worker] += 1
            log_file_result(
                self.log, pending.result, pending.outcome, pending.item.seq + 1, summary.files_seen
            )
            state.progress.update(summary, summary.files_seen)

    @staticmethod
    def _any_failure(state: RunState, uploads: deque[_Publishing]) -> bool:
        """A failure so far, counting files whose outcome is known but not yet summarised."""
        with state.lock:
            if state.summary.failed:
                return True
        return any(p.upload.done() and p.result.status == "failed" for p in uploads)
