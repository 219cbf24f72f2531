"""
One child process, seen from the worker: start it, feed it files, enforce the limits.

A :class:`ChildProcess` serves many files. When a file times out or uses up its CPU time, the
child dies or it breaks the protocol, the process is killed and the pool
(:mod:`airflow_byo.runner.child_pool`) starts a fresh one for the remaining files. The child
starts from an allow-listed environment (:mod:`.child_environment`), so it never holds the
worker's secrets; it writes outputs only into a drop folder of its own, from which the worker
takes them (:mod:`.output_handoff`); and every message it sends is checked (:mod:`.child_messages`)
as it is read (:mod:`.child_pipes`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from airflow_byo.exceptions import ByoProcessorError
from airflow_byo.results import FileOutcome
from airflow_byo.runner.child_environment import child_environment
from airflow_byo.runner.child_messages import (
    ProtocolViolation,
    checked_done,
    checked_failure,
    checked_notify,
    checked_seq,
    parse_message,
)
from airflow_byo.runner.child_pipes import MAX_STDERR_LINE_BYTES, LineReader, relay_lines
from airflow_byo.runner.child_usage import CpuWatch
from airflow_byo.runner.output_handoff import HandoffError, clear_drop
from airflow_byo.runner.sandbox import describe_exit, prepare_sandbox
from airflow_byo.scratch import scratch_dir

if TYPE_CHECKING:
    from airflow_byo.results import OutcomeStatus
    from airflow_byo.runner.output_handoff import OutputStaging
    from airflow_byo.runner.sandbox import SandboxLaunch, SandboxSpec
    from airflow_byo.runner.sandbox_identity import SandboxIdentity
    from airflow_byo.runtime.protocol import FileRequest, InitRequest, Notify, StopRequest

__all__ = ["ChildProcess", "TaskLog"]


class TaskLog(Protocol):
    """What the flow needs of a task's logger: a stdlib ``logging.Logger`` or Airflow's ``self.log``."""

    def log(self, level: int, msg: Any, /, *args: Any) -> Any: ...
    def info(self, msg: Any, /, *args: Any) -> Any: ...
    def warning(self, msg: Any, /, *args: Any) -> Any: ...
    def error(self, msg: Any, /, *args: Any) -> Any: ...


log = logging.getLogger(__name__)

_STARTUP_TIMEOUT_SECONDS = 120.0
#: how long a child told to stop may take to exit before it is killed
_STOP_TIMEOUT_SECONDS = 10.0


class ChildProcess:
    """
    A running child that has loaded the processor and waits for files.

    :param python: interpreter of the flow's environment.
    :param runtime_dir: directory prepared by :func:`.child_environment.stage_runtime`.
    :param init: the init message (processor source, config, args).
    :param task_log: logger that receives the child's stderr (the user's prints and logs).
    :param staging: where the run's outputs are staged: the child gets a drop folder of its own
        there, and its outputs are taken out of it when a file is done.
    :param sandbox: what the child may see and do in its bubblewrap sandbox; ``None`` runs it
        unsandboxed (``[byo] sandbox = off``, or no bubblewrap in ``auto`` mode).
    :param identity: the uid the child runs as when the worker is root (see :mod:`.sandbox`).
    """

    def __init__(
        self,
        python: str,
        runtime_dir: str,
        init: InitRequest,
        task_log: TaskLog,
        staging: OutputStaging,
        sandbox: SandboxSpec | None = None,
        identity: SandboxIdentity | None = None,
    ) -> None:
        self._task_log = task_log
        self._staging = staging
        job = init["job_config"]
        self._cpu_seconds: float | None = job.get("cpu_seconds")
        self._max_notifications = int(job.get("max_notifications_per_file", 100))
        self.drop = staging.new_drop()
        self._cwd = scratch_dir("child")
        self._launch: SandboxLaunch | None = None
        bootstrap = (
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from airflow_byo.runtime.child import main; sys.exit(main())"
        )
        # -I: isolated mode, so PYTHONPATH, the user site and the cwd never leak into the child.
        argv = [python, "-I", "-c", bootstrap, runtime_dir]
        pipes: dict[str, Any] = {
            "stdin": subprocess.PIPE,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.PIPE,
        }
        try:
            if sandbox is not None:
                spec = replace(sandbox, writable=(*sandbox.writable, self.drop))
                self._launch = prepare_sandbox(argv, spec, identity=identity)
                # its own process group: a kill reaches everything it started
                self._proc = self._launch.start(**pipes, cwd=self._cwd, start_new_session=True)
            else:
                self._proc = subprocess.Popen(
                    argv, **pipes, env=child_environment(), cwd=self._cwd, start_new_session=True
                )
        except OSError as exc:
            self._remove_dirs()
            raise ByoProcessorError(
                f"cannot start the processor's interpreter {python!r}: {exc.strerror or exc}. "
                "Check python_interpreter (or the flow's environment under venv_cache_path)"
            ) from None
        except BaseException:
            self._remove_dirs()
            raise
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._reader = LineReader(self._proc.stdout.fileno())
        self._stderr_thread = threading.Thread(target=self._relay_stderr, daemon=True)
        self._stderr_thread.start()
        self._cpu = CpuWatch(self._proc.pid, depth=2 if self._launch is not None else 0)
        self.files_handled = 0
        self._queued: set[int] = set()  # sequence numbers sent and not answered yet
        self._send(init)
        self._await_ready()

    def _relay_stderr(self) -> None:
        assert self._proc.stderr is not None

        def emit(raw: bytes, dropped: int) -> None:
            text = raw.decode("utf-8", "replace").rstrip()
            if dropped:
                text += (
                    f" [... {dropped} more bytes of this line cut: lines over {MAX_STDERR_LINE_BYTES} bytes]"
                )
            self._task_log.info("[processor] %s", text)

        relay_lines(self._proc.stderr.fileno(), emit)

    def _send(self, message: InitRequest | FileRequest | StopRequest) -> None:
        self._stdin.write(json.dumps(message).encode() + b"\n")
        self._stdin.flush()

    def _await_ready(self) -> None:
        try:
            line = self._reader.readline(time.monotonic() + _STARTUP_TIMEOUT_SECONDS)
            message = parse_message(line, ("ready", "load_error")) if line else None
        except ProtocolViolation as exc:
            self.kill()
            raise ByoProcessorError(f"the processor sent an invalid message on start-up: {exc}") from None
        if message is None:
            self.kill()
            raise ByoProcessorError(
                f"the processor's environment failed to start (exit code {self._proc.returncode}); "
                "the [processor] lines above show why"
            )
        if message["ev"] == "load_error":
            self.stop()
            where = f" (line {message['lineno']})" if isinstance(message.get("lineno"), int) else ""
            hint = f". Hint: {message['hint']}" if message.get("hint") else ""
            raise ByoProcessorError(f"{str(message.get('message'))[:2000]}{where}{hint}")
        self._task_log.info(
            "Processor loaded in Python %s (%s)",
            str(message.get("python"))[:40],
            str(message.get("executable"))[:500],
        )

    def _prefix(self, seq: int) -> str:
        """Where the child stages the outputs of the run's ``seq``-th file (in its drop folder)."""
        return os.path.join(self.drop, f"{seq:06d}")

    def queue(self, request: FileRequest) -> bool:
        """
        Send a file request without waiting, so the child starts it as soon as it finishes the
        current one (the worker meanwhile publishes the previous file's outputs).
        """
        if request["seq"] in self._queued:
            return True
        try:
            self._send({**request, "out_prefix": self._prefix(request["seq"])})
        except (BrokenPipeError, OSError):
            return False
        self._queued.add(request["seq"])
        return True

    def process(self, request: FileRequest, timeout_seconds: float) -> FileOutcome:
        """
        Run the processor on one file (sending it unless :meth:`queue` did); kill the child if it
        exceeds ``timeout_seconds`` or its CPU time, or breaks the protocol. Requests are
        answered in the order they were sent.
        """
        self.files_handled += 1
        started = time.monotonic()
        notifications: list[Notify] = []

        def stopped(status: OutcomeStatus, error_type: str, error: str) -> FileOutcome:
            """An outcome the worker decides: the child gave no usable answer."""
            seconds = time.monotonic() - started
            return FileOutcome(
                status, seconds, notifications=notifications, error_type=error_type, error=error
            )

        try:
            answer = (
                self._answer(request, started + timeout_seconds, notifications)
                if self.queue(request)
                else None
            )
        except (ProtocolViolation, HandoffError) as exc:
            self.kill()  # a child that lies once is not asked again
            return stopped("error", "ProtocolError", f"the processor sent an invalid message: {exc}")
        finally:
            self._queued.discard(request["seq"])
            if self.alive:  # what a failed attempt or a lie left (a killed child's folder is gone)
                clear_drop(self.drop, keep=[f"{seq:06d}-" for seq in self._queued])
        if answer == "timeout":
            self.kill()
            return stopped(
                "timeout",
                "Timeout",
                f"processing took longer than job_config.timeout_seconds={timeout_seconds:g}s and was "
                "stopped; raise the timeout or make the function faster",
            )
        if answer == "cpu":
            self.kill()
            return stopped(
                "error",
                "CpuTimeExceeded",
                f"the function used more than job_config.cpu_seconds={self._cpu_seconds:g} s of CPU time "
                "on this file (its threads and the processes it started) and was stopped; raise "
                "cpu_seconds or make the function faster",
            )
        if answer is None:  # the child's end of the pipe closed: it died
            return stopped(
                "crashed",
                "ChildDied",
                f"the processor's process died ({self._exit_cause()}) while handling this file; a "
                "native library crash or the job_config.max_memory_mb cap are the usual causes",
            )
        return answer

    def _answer(
        self, request: FileRequest, deadline: float, notifications: list[Notify]
    ) -> FileOutcome | Literal["timeout", "cpu"] | None:
        """The child's checked answer to ``request``; ``"timeout"``, ``"cpu"``, or ``None`` at EOF."""
        budget = self._cpu.budget(self._cpu_seconds)
        dropped = 0
        try:
            while True:
                line = self._reader.readline(min(deadline, budget.next_check))
                if line is None:
                    if time.monotonic() >= deadline:
                        return "timeout"
                    if budget.used_up():
                        return "cpu"
                    continue
                if line == b"":
                    return None
                message = parse_message(line, ("notify", "done", "error"))
                checked_seq(message, request["seq"])
                if message["ev"] == "notify":
                    if len(notifications) < self._max_notifications:
                        notifications.append(checked_notify(message))
                    else:
                        dropped += 1
                    continue
                if message["ev"] == "done":
                    done, previews = checked_done(message)
                    outputs = self._staging.take(self._prefix(request["seq"]), done["outputs"], previews)
                    return FileOutcome(
                        "done",
                        done["seconds"],
                        outputs=outputs,
                        insights=done["insights"],
                        counters=done["counters"],
                        notifications=notifications,
                    )
                failure = checked_failure(message)
                return FileOutcome(
                    "error",
                    failure["seconds"],
                    notifications=notifications,
                    error_type=failure["type"],
                    error=failure["message"],
                    traceback=failure["traceback"],
                )
        finally:
            if dropped:
                self._task_log.warning(
                    "Dropped %d ctx.notify() call(s) of %s beyond job_config.max_notifications_per_file=%d",
                    dropped,
                    request["url"],
                    self._max_notifications,
                )

    def _exit_cause(self) -> str:
        code = self._proc.wait()
        if self._launch is not None:  # bwrap reports a child killed by signal N as 128+N
            return describe_exit(code)
        return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"

    @property
    def alive(self) -> bool:
        """False once the child was seen to exit (timeouts, crashes and stops all wait for it).
        No ``poll()`` here: this is asked before every file, and a waitpid per file is not free."""
        return self._proc.returncode is None

    @property
    def accepting(self) -> bool:
        """Whether the child takes more files: alive, and not told to finish."""
        return self.alive and not self._stdin.closed

    def finish(self) -> None:
        """
        Ask the child to finish once it has answered what it was sent; do not wait for it. Sent
        with the last file, the child exits while the worker publishes and settles that file.
        """
        if self.accepting:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._send({"op": "stop"})
            with contextlib.suppress(BrokenPipeError, OSError):
                self._stdin.close()

    def stop(self) -> None:
        """Ask the child to finish (unless :meth:`finish` did), then make sure it is gone."""
        if self.alive:
            self.finish()
            self._wait_exit(_STOP_TIMEOUT_SECONDS)
        self.kill()

    def _wait_exit(self, seconds: float) -> None:
        """
        Wait up to ``seconds`` for the child to exit, woken by its exit: ``Popen.wait(timeout)``
        polls with sleeps of up to 50 ms, which made every stop last up to half as long again
        as the child's exit (issue 24). Without a pidfd (Linux < 5.3), that polling wait.
        """
        try:
            exited = os.pidfd_open(self._proc.pid)
        except (AttributeError, OSError):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=seconds)
            return
        try:
            ready, _, _ = select.select([exited], [], [], seconds)
        finally:
            os.close(exited)
        if ready:
            self._proc.wait()

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        # Let the relay finish so the user's last prints land in the log before what follows.
        self._stderr_thread.join(timeout=5)
        self._reader.close()
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None and not stream.closed:
                with contextlib.suppress(OSError):
                    stream.close()
        self._remove_dirs()

    def _remove_dirs(self) -> None:
        """The child's working and drop folders, with whatever a killed child left in them."""
        if self._launch is not None:
            self._launch.close()
        shutil.rmtree(self._cwd, ignore_errors=True)
        shutil.rmtree(self.drop, ignore_errors=True)
