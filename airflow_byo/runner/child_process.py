"""
One child process, seen from the worker: start it, feed it files, enforce the timeout.

A :class:`ChildProcess` serves many files. When a file times out, the child dies or it breaks the
protocol, the process is killed and the pool (:mod:`airflow_byo.runner.child_pool`) starts a fresh
one for the remaining files. The child starts from an allow-listed environment, so it never holds
the worker's secrets, and every message it sends is checked (:mod:`.child_messages`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import airflow_byo.runtime as runtime_package
from airflow_byo.exceptions import ByoProcessorError
from airflow_byo.runner.child_messages import (
    MAX_MESSAGE_BYTES,
    FileOutcome,
    ProtocolViolation,
    checked_done,
    checked_failure,
    checked_notify,
    checked_seq,
    parse_message,
)
from airflow_byo.runner.sandbox import describe_exit, sandbox_command
from airflow_byo.scratch import scratch_dir

if TYPE_CHECKING:
    from airflow_byo.runner.child_messages import OutcomeStatus
    from airflow_byo.runner.sandbox import SandboxSpec
    from airflow_byo.runtime.protocol import FileRequest, InitRequest, Notify, StopRequest

__all__ = ["ChildProcess", "TaskLog", "child_environment", "stage_runtime"]


class TaskLog(Protocol):
    """What the flow needs of a task's logger: a stdlib ``logging.Logger`` or Airflow's ``self.log``."""

    def log(self, level: int, msg: Any, /, *args: Any) -> Any: ...
    def info(self, msg: Any, /, *args: Any) -> Any: ...
    def warning(self, msg: Any, /, *args: Any) -> Any: ...
    def error(self, msg: Any, /, *args: Any) -> Any: ...


log = logging.getLogger(__name__)

#: Variables the child may inherit; everything else -- AIRFLOW__* settings, connection URIs,
#: cloud credentials -- stays in the worker.
_ENV_ALLOWLIST = ("PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "HOME", "USER", "LOGNAME")

_STARTUP_TIMEOUT_SECONDS = 120.0


def child_environment() -> dict[str, str]:
    """The environment the child starts with: an allow-list of harmless variables, nothing else."""
    env = {key: os.environ[key] for key in _ENV_ALLOWLIST if key in os.environ}
    env.update({key: value for key, value in os.environ.items() if key.startswith("LC_")})
    # Fewer malloc arenas keep the child's address space small, which matters under RLIMIT_AS.
    env["MALLOC_ARENA_MAX"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stage_runtime(directory: str) -> str:
    """
    Copy the stdlib-only runtime into ``directory`` as an importable ``airflow_byo.runtime``.

    Only these few files are shipped: the rest of airflow_byo (and Airflow itself) stays out of
    the child's ``sys.path``.
    """
    package_root = Path(directory) / "airflow_byo"
    target = package_root / "runtime"
    target.mkdir(parents=True, exist_ok=True)
    (package_root / "__init__.py").write_text('"""Runtime-only copy of airflow_byo."""\n')
    for source in Path(runtime_package.__file__).parent.glob("*.py"):
        shutil.copyfile(source, target / source.name)
    return directory


class _LineReader:
    """Read newline-terminated messages from a pipe with a deadline and a size limit."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._selector = selectors.DefaultSelector()
        self._selector.register(fd, selectors.EVENT_READ)

    def readline(self, deadline: float | None) -> bytes | None:
        """Return one line, ``b""`` at EOF, or ``None`` when the deadline passes."""
        scanned = 0  # only new bytes are searched for the newline: no quadratic rescans
        while (end := self._buffer.find(b"\n", scanned)) < 0:
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                raise ProtocolViolation(f"a message longer than {MAX_MESSAGE_BYTES} bytes")
            scanned = len(self._buffer)
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                return None
            if not self._selector.select(timeout):
                return None
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                return b""
            self._buffer += chunk
        if end > MAX_MESSAGE_BYTES:  # its newline came in the same read as its excess
            raise ProtocolViolation(f"a message longer than {MAX_MESSAGE_BYTES} bytes")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def close(self) -> None:
        self._selector.close()


class ChildProcess:
    """
    A running child that has loaded the processor and waits for files.

    :param python: interpreter of the flow's environment.
    :param runtime_dir: directory prepared by :func:`stage_runtime`.
    :param init: the init message (processor source, config, args).
    :param task_log: logger that receives the child's stderr (the user's prints and logs).
    :param sandbox: what the child may see and do in its bubblewrap sandbox; ``None`` runs it
        unsandboxed (``[byo] sandbox = off``, or no bubblewrap in ``auto`` mode).
    """

    def __init__(
        self,
        python: str,
        runtime_dir: str,
        init: InitRequest,
        task_log: TaskLog,
        sandbox: SandboxSpec | None = None,
    ) -> None:
        self._task_log = task_log
        self._sandbox = sandbox
        bootstrap = (
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from airflow_byo.runtime.child import main; sys.exit(main())"
        )
        # -I: isolated mode, so PYTHONPATH, the user site and the cwd never leak into the child.
        argv = [python, "-I", "-c", bootstrap, runtime_dir]
        if sandbox is not None:
            argv = sandbox_command(argv, sandbox)  # its cwd is the sandbox's private /tmp
        self._cwd = scratch_dir("child")
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_environment(),
                cwd=self._cwd,
                start_new_session=True,  # its own process group: a kill reaches its subprocesses too
            )
        except OSError as exc:
            shutil.rmtree(self._cwd, ignore_errors=True)
            raise ByoProcessorError(
                f"cannot start the processor's interpreter {python!r}: {exc.strerror or exc}. "
                "Check python_interpreter (or the flow's environment under venv_cache_path)"
            ) from None
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._reader = _LineReader(self._proc.stdout.fileno())
        self._stderr_thread = threading.Thread(target=self._relay_stderr, daemon=True)
        self._stderr_thread.start()
        self.files_handled = 0
        self._queued: set[int] = set()  # sequence numbers sent and not answered yet
        self._send(init)
        self._await_ready()

    def _relay_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in iter(self._proc.stderr.readline, b""):
            self._task_log.info("[processor] %s", raw.decode("utf-8", "replace").rstrip())

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

    def queue(self, request: FileRequest) -> bool:
        """
        Send a file request without waiting, so the child starts it as soon as it finishes the
        current one (the worker meanwhile publishes the previous file's outputs).
        """
        if request["seq"] in self._queued:
            return True
        try:
            self._send(request)
        except (BrokenPipeError, OSError):
            return False
        self._queued.add(request["seq"])
        return True

    def process(self, request: FileRequest, timeout_seconds: float) -> FileOutcome:
        """
        Run the processor on one file (sending it unless :meth:`queue` did); kill the child if it
        exceeds ``timeout_seconds`` or breaks the protocol. Requests are answered in the order
        they were sent.
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
        except ProtocolViolation as exc:
            self.kill()  # a child that lies once is not asked again
            return stopped("error", "ProtocolError", f"the processor sent an invalid message: {exc}")
        finally:
            self._queued.discard(request["seq"])
        if answer == "timeout":
            self.kill()
            return stopped(
                "timeout",
                "Timeout",
                f"processing took longer than job_config.timeout_seconds={timeout_seconds:g}s and was "
                "stopped; raise the timeout or make the function faster",
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
    ) -> FileOutcome | Literal["timeout"] | None:
        """The child's checked answer to ``request``; ``"timeout"``, or ``None`` at EOF."""
        while True:
            line = self._reader.readline(deadline)
            if line is None:
                return "timeout"
            if line == b"":
                return None
            message = parse_message(line, ("notify", "done", "error"))
            checked_seq(message, request["seq"])
            if message["ev"] == "notify":
                notifications.append(checked_notify(message))
                continue
            if message["ev"] == "done":
                done, outputs = checked_done(message, request["out_prefix"])
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

    def _exit_cause(self) -> str:
        code = self._proc.wait()
        if self._sandbox is not None:  # bwrap reports a child killed by signal N as 128+N
            return describe_exit(code, self._sandbox)
        return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"

    @property
    def alive(self) -> bool:
        """False once the child was seen to exit (timeouts, crashes and stops all wait for it).
        No ``poll()`` here: this is asked before every file, and a waitpid per file is not free."""
        return self._proc.returncode is None

    def stop(self) -> None:
        """Ask the child to finish, then make sure it is gone."""
        if self.alive:
            try:
                self._send({"op": "stop"})
                self._stdin.close()
                self._proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                pass
        self.kill()

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
        shutil.rmtree(self._cwd, ignore_errors=True)
