"""
The children that run a flow's function during one run: start, recycle, replace, retry.

The pool stages the stdlib-only runtime once, starts a first child before any file is touched (a
processor that cannot load fails the run here), replaces a child after ``job_config.batch_size``
files or after it was killed (timeout, crash, protocol violation), and runs each file with
``job_config.retries`` more attempts after a failure. It knows nothing about sources,
destinations or the ledger: it turns file requests into :class:`FileOutcome` values.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from airflow_byo.runner.child_environment import stage_runtime
from airflow_byo.runner.child_process import ChildProcess
from airflow_byo.runner.sandbox import worker_identity
from airflow_byo.scratch import scratch_dir, sweep

if TYPE_CHECKING:
    from types import TracebackType

    from airflow_byo.processor import ProcessorSource
    from airflow_byo.results import FileOutcome
    from airflow_byo.runner.child_process import TaskLog
    from airflow_byo.runner.output_handoff import OutputStaging
    from airflow_byo.runner.sandbox import SandboxSpec
    from airflow_byo.runner.sandbox_identity import SandboxIdentity
    from airflow_byo.runtime.protocol import FileRequest, InitRequest
    from airflow_byo.runtime_config import JobConfig, RuntimeConfig

__all__ = ["ChildPool", "init_request"]


def init_request(processor: ProcessorSource, config: RuntimeConfig, preview_rows: int = 0) -> InitRequest:
    """
    The first message a child receives: what to load and how to call it, and (test mode) how
    many rows of each binary output to decode for the preview.
    """
    return {
        "op": "init",
        "code": processor.code,
        "reference": processor.reference,
        "function_name": processor.function_name,
        "sys_path": list(processor.sys_path),
        "job_config": config.job_config.model_dump(),
        "variables": dict(config.variables),
        "args": list(config.custom_code.args),
        "kwargs": dict(config.custom_code.kwargs),
        "preview_rows": preview_rows,
    }


class ChildPool:
    """
    The child processes of one run (use as a context manager).

    :param python: interpreter of the flow's environment.
    :param init: the init message every child starts with (:func:`init_request`).
    :param job: the flow's job configuration (batch size, retries, timeout).
    :param log: the task's logger.
    :param staging: where the children's outputs are staged (each child gets a drop folder).
    :param sandbox: the children's sandbox, or ``None`` to run them unsandboxed; the staged
        runtime and the processor's ``sys_path`` folders are added here, read-only.
    :param inputs: the pipeline's folder of staged inputs (bound read-only in ``sandbox``).

    A root worker's sandboxed children run as a uid the pool leases for its whole life (one
    child at a time, so the uid's process limit is one child's); :attr:`identity` says which, so
    the pipeline hands its staged inputs to it.
    """

    def __init__(
        self,
        *,
        python: str,
        init: InitRequest,
        job: JobConfig,
        log: TaskLog,
        staging: OutputStaging,
        sandbox: SandboxSpec | None = None,
        inputs: str | None = None,
    ) -> None:
        self.python = python
        self.init = init
        self.job = job
        self.log = log
        self.staging = staging
        self.inputs = inputs
        self._sandbox = sandbox
        self.identity: SandboxIdentity | None = None
        self._child: ChildProcess | None = None
        self._runtime_dir = ""

    def __enter__(self) -> ChildPool:
        for path in sweep():
            self.log.info("Removed scratch directory %s left by a killed run", path)
        self._runtime_dir = stage_runtime(scratch_dir("runtime"))
        try:
            if self._sandbox is not None:
                folders = (self._runtime_dir, *self.init["sys_path"])
                self._sandbox = replace(self._sandbox, read_only=(*self._sandbox.read_only, *folders))
                self.identity = worker_identity()
                if self.identity is not None and self.inputs is not None:  # staged for the children alone
                    os.chown(self.inputs, self.identity.uid, self.identity.gid)
            self._ready_child()
        except BaseException:
            self._close(*self._detach())
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close(*self._detach())

    def close_behind(self) -> threading.Thread:
        """
        Close the pool in a thread of its own, returned for the caller to join: the child is
        stopped (told to finish, waited for, killed if it lingers) and the pool's folders are
        removed while the caller publishes and settles its last files, instead of after them
        (issue 24: ~40-90 ms at the end of every pipeline). Leaving the ``with`` block afterwards
        does nothing more. Call it only once no more files will be processed.
        """
        closing = threading.Thread(target=self._close, args=self._detach(), name="byo-child-close")
        closing.start()
        return closing

    def _detach(self) -> tuple[ChildProcess | None, str, SandboxIdentity | None]:
        """What the pool holds (its child, runtime folder and uid lease), handed over for closing."""
        held = (self._child, self._runtime_dir, self.identity)
        self._child, self._runtime_dir, self.identity = None, "", None
        return held

    @staticmethod
    def _close(child: ChildProcess | None, runtime_dir: str, identity: SandboxIdentity | None) -> None:
        """Stop ``child``, remove ``runtime_dir``, then give the uid back: only once its child is gone."""
        try:
            if child is not None:
                child.stop()
        finally:
            if runtime_dir:
                shutil.rmtree(runtime_dir, ignore_errors=True)
            if identity is not None:
                identity.release()

    def _ready_child(self) -> ChildProcess:
        """
        The current child, replaced after ``batch_size`` files, after it was killed, or after it
        was told to finish (a retry of the file it was told was the last).
        """
        child = self._child
        if child is not None and (not child.accepting or child.files_handled >= self.job.batch_size):
            child.stop()
            child = None
        if child is None:
            child = ChildProcess(
                self.python,
                self._runtime_dir,
                self.init,
                self.log,
                self.staging,
                self._sandbox,
                self.identity,
            )
        self._child = child
        return child

    def can_queue_ahead(self) -> bool:
        """
        Whether the next file may be handed to the child before this one is answered, so the
        child works while the worker publishes. Not with in-run retries (a retry must not queue
        behind the next file) and not into a child that is about to be replaced.
        """
        child = self._child
        if self.job.retries or child is None or not child.accepting:
            return False
        return child.files_handled + 2 <= self.job.batch_size

    def queue_ahead(self, request: FileRequest) -> None:
        """Send the next file to the current child (after :meth:`can_queue_ahead` said yes)."""
        if self._child is not None:
            self._child.queue(request)

    def finish(self) -> None:
        """
        No more files after those sent: the current child may exit once it has answered them (its
        interpreter and sandbox wind down while the worker waits for the last answer, publishes and
        settles). With in-run retries it is left running (a retry would need a new child); a file
        sent after this goes to a new child. The pool's exit still waits for it.
        """
        if self._child is not None and not self.job.retries:
            self._child.finish()

    def start(self, request: FileRequest) -> None:
        """Send ``request`` to a ready child (before :meth:`queue_ahead` of the next one)."""
        self._ready_child().queue(request)

    def process(self, request: FileRequest, label: str) -> FileOutcome:
        """
        The outcome of ``request`` (sent by :meth:`start`), with up to ``job_config.retries``
        more attempts (what a failed attempt staged is cleared from the child's drop folder).
        """
        for attempt in range(1, self.job.retries + 2):
            child = self._child if attempt == 1 and self._child is not None else self._ready_child()
            outcome = child.process(request, self.job.timeout_seconds)
            outcome.attempts = attempt
            if outcome.ok:
                return outcome
            if attempt <= self.job.retries:
                self.log.warning("%s failed (attempt %d): %s; retrying", label, attempt, outcome.error)
        return outcome
