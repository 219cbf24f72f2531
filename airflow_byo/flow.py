"""
Run a processor over files: list -> stage -> child -> publish, with the run summary on the side.

This is the engine behind every way of running a flow (the operator, test mode, later the
decorator and the CLI). It knows nothing about Airflow tasks: it takes locations, a processor
and a configuration, and returns a :class:`~airflow_byo.summary.RunSummary`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_byo.exceptions import ByoConfigError, ByoStorageError
from airflow_byo.faults import crash_point
from airflow_byo.scratch import scratch, scratch_dir, sweep
from airflow_byo.summary import FileResult, RunSummary
from airflow_byo.supervisor import ChildProcess, FileOutcome, stage_runtime

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from airflow_byo.config import RuntimeConfig
    from airflow_byo.processor import ProcessorSource
    from airflow_byo.storage import Location, SourceFile
    from airflow_byo.supervisor import TaskLog

__all__ = ["FlowRunner", "OutputPreview"]

_PREVIEW_MAX_BYTES = 64 * 1024


@dataclass
class OutputPreview:
    """The first lines of one output, shown by test mode."""

    name: str
    size: int
    records: int | None
    lines: list[str]
    truncated: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "records": self.records,
            "lines": self.lines,
            "truncated": self.truncated,
        }


def _preview(local_path: str, max_lines: int) -> tuple[list[str], bool]:
    """Read at most ``max_lines`` lines (and 64 KB) of an output; binary shows as hex."""
    with open(local_path, "rb") as handle:
        head = handle.read(_PREVIEW_MAX_BYTES + 1)
    more_bytes = len(head) > _PREVIEW_MAX_BYTES
    head = head[:_PREVIEW_MAX_BYTES]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte character cut at the 64 KB mark
            return [f"<binary, first bytes: {head[:64].hex(' ')}>"], True
        text = head[: exc.start].decode("utf-8")
    lines = text.splitlines()
    return lines[:max_lines], more_bytes or len(lines) > max_lines


@dataclass
class _Pending:
    """A processed file whose outputs may still be uploading."""

    file: SourceFile
    result: FileResult
    outcome: FileOutcome
    upload: Future[None]
    done: int
    total: int


def _prefetch(
    pool: ThreadPoolExecutor, source: Location, files: Iterable[SourceFile], staging: str, depth: int
) -> Iterator[tuple[int, SourceFile, Future[str]]]:
    """Yield each file with a future of its local copy, keeping ``depth`` downloads ahead."""
    window: deque[tuple[int, SourceFile, Future[str]]] = deque()
    for seq, file in enumerate(files):
        if source.is_local:  # nothing to download: the child reads the file in place
            ready: Future[str] = Future()
            ready.set_result(source.local_copy(file, staging))
            yield seq, file, ready
            continue
        window.append((seq, file, pool.submit(_download, source, file, staging)))
        if len(window) > depth:
            yield window.popleft()
    while window:
        yield window.popleft()


class _Progress:
    """Logs files done/total, bytes, rate and ETA every ``interval`` seconds (not per file)."""

    def __init__(self, log: TaskLog, interval: float) -> None:
        self.log = log
        self.interval = interval
        self.started = self.last = time.monotonic()

    def update(self, summary: RunSummary, total: int) -> None:
        now = time.monotonic()
        done = len(summary.files)
        if now - self.last < self.interval and done < total:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate else float("inf")
        size = sum(f.size for f in summary.files)
        self.log.info(
            "progress: %d/%d files (%d failed), %.1f MB in, %.1f files/s, %.1f MB/s, ETA %.0fs",
            done,
            total,
            len(summary.failed),
            size / 1e6,
            rate,
            size / 1e6 / elapsed,
            eta,
        )


def _remove_outputs(prefix: str) -> None:
    """Delete what one input file left in the staging folder (``<prefix>-<n>``), e.g. after a failure."""
    for path in glob.glob(glob.escape(prefix) + "-*"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _download(source: Location, file: SourceFile, staging: str) -> str:
    local = source.local_copy(file, staging)
    crash_point("downloaded")
    return local


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


class FlowRunner:
    """
    Stream files through one processor, in long-lived child processes.

    :param processor: the function to run (see :func:`airflow_byo.processor.resolve_processor`).
    :param config: the validated runtime configuration.
    :param python: interpreter of the flow's environment.
    :param log: the task's logger; progress, the user's prints and notifications go there.
    :param on_notify: called with each ``ctx.notify()`` event (file url, event); the default logs it.
    :param quarantine: where ``error_policy: quarantine`` copies failed inputs and their errors.
    """

    def __init__(
        self,
        *,
        processor: ProcessorSource,
        config: RuntimeConfig,
        python: str,
        log: TaskLog,
        on_notify: Callable[[str, dict[str, Any]], None] | None = None,
        quarantine: Location | None = None,
    ) -> None:
        self.processor = processor
        self.config = config
        self.job = config.job_config
        self.python = python
        self.log = log
        self.on_notify = on_notify or self._log_notification
        self.quarantine = quarantine
        self._init = processor.child_init() | config.child_init()
        self._child: ChildProcess | None = None
        self._runtime_dir = ""
        self._progress = _Progress(log, self.job.progress_interval_seconds)

    # -- child lifecycle -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """
        Stage the runtime and load the processor in a first child, before any file is touched
        (a broken processor fails here); stop whatever child is left at the end.
        """
        for path in sweep():
            self.log.info("Removed scratch directory %s left by a killed run", path)
        self._runtime_dir = stage_runtime(scratch_dir("runtime"))
        try:
            self._ready_child()
            yield
        finally:
            if self._child is not None:
                self._child.stop()
                self._child = None
            shutil.rmtree(self._runtime_dir, ignore_errors=True)

    def _ready_child(self) -> ChildProcess:
        """The current child, replaced after ``batch_size`` files or after it was killed."""
        child = self._child
        if child is not None and (not child.alive or child.files_handled >= self.job.batch_size):
            child.stop()
            child = None
        if child is None:
            child = ChildProcess(self.python, self._runtime_dir, self._init, self.log)
        self._child = child
        return child

    def _log_notification(self, url: str, event: dict[str, Any]) -> None:
        level = logging.getLevelName(str(event.get("level", "info")).upper())
        level = level if isinstance(level, int) else logging.INFO
        self.log.log(level, "notify from %s: %s %s", url, event.get("message"), event.get("fields") or "")

    # -- one file ------------------------------------------------------------------------------
    @staticmethod
    def _request(file: SourceFile, seq: int, local_path: str, out_root: str) -> dict[str, Any]:
        return {
            "seq": seq,
            "path": local_path,
            "url": file.url,
            "name": file.name,
            "relative_path": file.relative_path,
            "size": file.size,
            "out_prefix": os.path.join(out_root, f"{seq:06d}"),
        }

    def _queue_ahead(self, ahead: tuple[int, SourceFile, Future[str]] | None, out_root: str) -> None:
        """
        Hand the next file to the child before waiting for this one, so the child works while
        the worker publishes. Only without in-run retries (a retry must not queue behind the
        next file) and not into a child that is about to be replaced.
        """
        child = self._child
        if ahead is None or self.job.retries or child is None or not child.alive:
            return
        if child.files_handled + 2 > self.job.batch_size:
            return
        seq, file, local = ahead
        try:
            local_path = local.result()
        except ByoStorageError:
            return  # reported when that file's turn comes
        child.queue(self._request(file, seq, local_path, out_root))

    def _process(
        self,
        file: SourceFile,
        seq: int,
        local: Future[str],
        out_root: str,
        source: Location,
        ahead: tuple[int, SourceFile, Future[str]] | None = None,
    ) -> FileOutcome:
        """
        Run the child on one (downloaded) file, with ``job_config.retries`` more attempts after a
        failure, then quarantine it if the policy says so. The local copy of a remote input is
        removed afterwards.
        """
        try:
            local_path = local.result()
        except ByoStorageError as exc:
            return FileOutcome(status="error", error_type="ByoStorageError", error=str(exc))
        request = self._request(file, seq, local_path, out_root)
        out_prefix = request["out_prefix"]
        child = self._ready_child()
        child.queue(request)
        self._queue_ahead(ahead, out_root)
        try:
            for attempt in range(1, self.job.retries + 2):
                outcome = (child if attempt == 1 else self._ready_child()).process(
                    request, self.job.timeout_seconds
                )
                outcome.attempts = attempt
                if outcome.ok:
                    break
                _remove_outputs(out_prefix)
                if attempt <= self.job.retries:
                    self.log.warning("%s failed (attempt %d): %s; retrying", file.url, attempt, outcome.error)
            crash_point("processed")
            if not outcome.ok and self.job.error_policy == "quarantine":
                self._quarantine(file, local_path, outcome)
        finally:
            if not source.is_local:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(local_path)
        for event in outcome.notifications:
            self.on_notify(file.url, event)
        return outcome

    def _quarantine(self, file: SourceFile, local_path: str, outcome: FileOutcome) -> None:
        """Copy a failed input and its error record to the quarantine location."""
        if self.quarantine is None:
            raise ByoConfigError("error_policy 'quarantine' needs a quarantine location")
        record = {
            "url": file.url,
            "size": file.size,
            "mtime": file.mtime,
            "etag": file.etag,
            "attempts": outcome.attempts,
            "status": outcome.status,
            "error_type": outcome.error_type,
            "error": outcome.error,
            "traceback": outcome.traceback,
            "quarantined_at": time.time(),
        }
        with scratch("quarantine") as work:
            error_file = os.path.join(work, "error.json")
            with open(error_file, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=2, default=str)
            copy = os.path.join(work, "input")
            shutil.copyfile(local_path, copy)  # publish() moves local files: never move the source
            self.quarantine.publish(copy, file.relative_path)
            self.quarantine.publish(error_file, f"{file.relative_path}.error.json")
        outcome.quarantined = True
        self.log.warning("Quarantined %s to %s", file.url, self.quarantine.url_for(file.relative_path))

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
        the file's outputs were published.
        """
        tracker = tracker or _EveryFile()
        self._progress = _Progress(self.log, self.job.progress_interval_seconds)
        summary = RunSummary(source=source.url, destination=destination.url, files_seen=len(files))
        started = time.monotonic()
        reserved: dict[str, str] = {}  # output name -> input url that produced it in this run
        depth = self.job.transfer_concurrency
        with (
            self._session(),
            destination.output_staging() as out_root,
            scratch("inputs") as staging,
        ):
            pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="byo-transfer")
            uploads: deque[_Pending] = deque()
            try:
                handled: set[str] = set()
                items = _prefetch(pool, source, tracker.claimed(files), staging, depth)
                current = next(items, None)
                while current is not None:
                    seq, file, local = current
                    while uploads and (len(uploads) >= depth or uploads[0].upload.done()):
                        self._finish(uploads.popleft(), summary, tracker)
                    if self.job.error_policy == "fail_fast" and self._any_failure(summary, uploads):
                        break
                    handled.add(file.url)
                    out_prefix = os.path.join(out_root, f"{seq:06d}")
                    ahead = next(items, None)
                    outcome = self._process(file, seq, local, out_root, source, ahead)
                    current = ahead
                    result = FileResult(
                        url=file.url, status="failed", size=file.size, seconds=outcome.seconds
                    )
                    upload: Future[None] = Future()
                    if self._check_outputs(outcome, result, reserved):
                        upload = pool.submit(self._publish, destination, outcome, result, out_prefix)
                    else:
                        _remove_outputs(out_prefix)
                        upload.set_result(None)
                    uploads.append(_Pending(file, result, outcome, upload, seq + 1, len(files)))
                while uploads:
                    self._finish(uploads.popleft(), summary, tracker)
                if self.job.error_policy == "fail_fast" and summary.failed:
                    for file in files:
                        if file.url not in handled:
                            summary.add(FileResult(url=file.url, status="skipped", size=file.size), {}, {})
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        summary.seconds = time.monotonic() - started
        return summary

    @staticmethod
    def _any_failure(summary: RunSummary, uploads: deque[_Pending]) -> bool:
        """A failure so far, counting files whose outcome is known but not yet summarised."""
        return bool(summary.failed) or any(p.upload.done() and p.result.status == "failed" for p in uploads)

    def _check_outputs(self, outcome: FileOutcome, result: FileResult, reserved: dict[str, str]) -> bool:
        """True when the outputs can be published: the file succeeded and its names are its own."""
        if not outcome.ok:
            result.error_type, result.error = outcome.error_type, outcome.error
            if outcome.quarantined:
                result.status = "quarantined"
            return False
        clashes = [o["name"] for o in outcome.outputs if o["name"] in reserved]
        if clashes:
            result.error_type = "OutputNameClash"
            result.error = (
                f"output {clashes[0]!r} was already written by {reserved[clashes[0]]} in this run; "
                "make output names unique per input, e.g. job_config.output_name "
                "'{rel_dir}/{stem}.{ext}' or include the input's name in ctx.output() names"
            )
            return False
        for output in outcome.outputs:
            reserved[output["name"]] = result.url
        return True

    def _publish(
        self, destination: Location, outcome: FileOutcome, result: FileResult, out_prefix: str
    ) -> None:
        """Publish one file's outputs (in a transfer thread); the result says how it went."""
        try:
            for output in outcome.outputs:
                crash_point("uploading")
                destination.publish(output["local_path"], output["name"])
                result.add_output(output)
            crash_point("published")
            result.status = "processed"
        except ByoStorageError as exc:
            result.error_type, result.error = "ByoStorageError", str(exc)
        finally:
            _remove_outputs(out_prefix)

    def _finish(self, pending: _Pending, summary: RunSummary, tracker: FileTracker) -> None:
        pending.upload.result()
        tracker.settle(pending.file, pending.result, pending.outcome.quarantined)
        crash_point("committed")
        summary.add(pending.result, pending.outcome.insights, pending.outcome.counters)
        summary.notifications += len(pending.outcome.notifications)
        self._log_result(pending.result, pending.outcome, pending.done, pending.total)
        self._progress.update(summary, pending.total)

    def _log_result(self, result: FileResult, outcome: FileOutcome, done: int, total: int) -> None:
        # Successes are logged per file only in test mode; runs report progress at an interval.
        if result.status == "processed":
            if total > 1:
                return
            self.log.info(
                "[%d/%d] %s -> %s (%.3fs)",
                done,
                total,
                result.url,
                ", ".join(result.outputs) or "no output",
                result.seconds,
            )
        else:
            self.log.error(
                "[%d/%d] %s FAILED: %s: %s", done, total, result.url, result.error_type, result.error
            )
            if outcome.traceback:
                self.log.error("Traceback from the processor:\n%s", outcome.traceback)

    def test(self, source: Location, file: SourceFile) -> tuple[RunSummary, list[OutputPreview]]:
        """Run the processor on one file and return previews of its outputs; write nothing."""
        summary = RunSummary(source=file.url, destination=None, test_mode=True, files_seen=1)
        previews: list[OutputPreview] = []
        started = time.monotonic()
        with (
            self._session(),
            scratch("test") as out_root,
            scratch("inputs") as staging,
        ):
            local: Future[str] = Future()
            try:
                local.set_result(source.local_copy(file, staging))
            except ByoStorageError as exc:
                local.set_exception(exc)
            outcome = self._process(file, 0, local, out_root, source)
            result = FileResult(
                url=file.url,
                status="processed" if outcome.ok else "failed",
                size=file.size,
                seconds=outcome.seconds,
            )
            result.error_type, result.error = outcome.error_type, outcome.error
            for output in outcome.outputs:
                lines, truncated = _preview(output["local_path"], self.job.preview_lines)
                previews.append(
                    OutputPreview(output["name"], output["size"], output["records"], lines, truncated)
                )
                result.add_output(output)
            summary.add(result, outcome.insights, outcome.counters)
            summary.notifications = len(outcome.notifications)
            self._log_result(result, outcome, 1, 1)
        summary.seconds = time.monotonic() - started
        return summary, previews
