"""
pasta's process, once started by :func:`.sandbox_network.attach_user_network`: its files, its
readiness, its log, and its lifetime.

pasta runs in the foreground as the worker's child. Its log file and readiness FIFO sit in a folder
of the worker's; the worker reads the FIFO until pasta writes its pid there, which it does once
the namespace is configured. pasta does not notice on its own that the sandbox ended (it holds the
namespace open), so a thread per network waits on the sandbox's pidfd and stops pasta then;
:meth:`UserNetwork.close` stops it earlier.

Stdlib only at import: the worker imports it next to ``sandbox``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import tempfile
import threading
import time

from airflow_byo.runner.sandbox_errors import processor_error

__all__ = ["PastaOutput", "UserNetwork", "pasta_file_options", "pasta_files", "wait_until_ready"]


class PastaOutput:
    """pasta's log file and stderr, still readable once their folder is gone."""

    def __init__(self, log: str) -> None:
        self._log = os.open(log, os.O_RDONLY | os.O_CLOEXEC)
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by close()

    def text(self) -> str:
        """Everything pasta wrote so far, the log (at most its 1 MiB ``--log-size``) then stderr."""
        parts = []
        for fd in (self._log, self.stderr.fileno()):
            with contextlib.suppress(OSError):  # closed
                parts.append(os.pread(fd, 1 << 20, 0).decode(errors="replace"))
        return "".join(parts)

    def message(self) -> str:
        """pasta's own words for an error: without its banner, syslog noise or usage text."""
        lines = []
        for line in self.text().splitlines():
            line = line.strip()
            if line.startswith("Usage:"):  # after an option it does not know: the reason came first
                break
            if line and "syslog" not in line and not line.startswith(("pasta unknown version", "pasta 0")):
                lines.append(line)
        return "; ".join(dict.fromkeys(lines[-5:])) or "no message"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._log)
        self.stderr.close()


class UserNetwork:
    """
    pasta attached to one sandbox's network namespace; stops when the sandbox ends or on :meth:`close`.

    :ivar pid: the sandbox process whose namespace pasta serves.
    :ivar pasta_pid: pasta's own pid on the host.
    :ivar attach_ms: how long :func:`.sandbox_network.attach_user_network` took, start to configured
        namespace.
    """

    def __init__(
        self, pid: int, process: subprocess.Popen[bytes], sandbox_fd: int, output: PastaOutput
    ) -> None:
        self.pid = pid
        self.pasta_pid = process.pid
        self.attach_ms = 0.0
        self._process = process
        self._output = output
        self._log = ""
        self._lock = threading.Lock()
        self._closed = False
        self._pasta_fd = os.pidfd_open(process.pid)
        self._sandbox_fd = sandbox_fd
        self._watcher = threading.Thread(target=self._watch, name=f"byo-pasta-{pid}", daemon=True)
        self._watcher.start()

    def __enter__(self) -> UserNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether pasta still serves the namespace."""
        return self._process.poll() is None

    def log(self) -> str:
        """What pasta logged (errors only: it runs ``--quiet``), e.g. to say why the network died."""
        with self._lock:
            return self._log if self._closed else self._output.text()

    def check_configured(self) -> None:
        """Raise unless the namespace has a default route through pasta's interface (a self-test)."""
        try:
            with open(f"/proc/{self.pid}/net/route", encoding="ascii") as routes:
                default = any(line.split()[1:2] == ["00000000"] for line in routes.readlines()[1:])
        except OSError as exc:
            raise processor_error(f"cannot read the routes of the sandbox (pid {self.pid}): {exc}") from None
        if not default:
            raise processor_error(f"pasta started, but the sandbox (pid {self.pid}) has no default route")

    def close(self, timeout: float = 5.0) -> None:
        """Stop pasta (SIGTERM, then SIGKILL after ``timeout``); returns once it is gone. Idempotent.

        The sandbox keeps running, without a network (pasta's interface goes with it).
        """
        with self._lock:  # held throughout: a second caller (the watcher) waits for the first
            if self._closed:
                return
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._log = self._output.text()
            self._output.close()
            self._closed = True

    def _watch(self) -> None:
        # Both pidfds become readable when their process ends: the sandbox (stop pasta) or pasta
        # (stopped by close(), or crashed: reap it). This thread alone closes them, so no other
        # thread can close an fd while it is polled.
        poller = select.poll()
        poller.register(self._sandbox_fd, select.POLLIN)
        poller.register(self._pasta_fd, select.POLLIN)
        try:
            poller.poll()
        finally:
            self.close()
            os.close(self._sandbox_fd)
            os.close(self._pasta_fd)


def pasta_files(workdir: str, owner: int, gid: int) -> tuple[int, PastaOutput]:
    """pasta's log file and readiness FIFO, owned by the uid pasta runs as; the FIFO's read end.

    The folder stays the worker's (0711): pasta may write its two files, not create or delete any.
    """
    os.chmod(workdir, 0o711)
    log, fifo = _files(workdir)
    os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.mkfifo(fifo, 0o600)
    if owner >= 0:
        for path in (log, fifo):
            os.chown(path, owner, gid)
    # Opened before pasta starts, non-blocking: its write-open then succeeds at once, and poll()
    # reports nothing until it has written (a FIFO never opened for writing does not hang up).
    ready = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    return ready, PastaOutput(log)


def pasta_file_options(workdir: str) -> list[str]:
    """pasta's options naming the files :func:`pasta_files` made: its log, and the FIFO as its pid file."""
    log, fifo = _files(workdir)
    return ["--log-file", log, "--pid", fifo]


def _files(workdir: str) -> tuple[str, str]:
    return os.path.join(workdir, "log"), os.path.join(workdir, "ready")


def wait_until_ready(
    process: subprocess.Popen[bytes], ready: int, output: PastaOutput, pid: int, timeout: float
) -> None:
    """
    Return once pasta has written its pid to the FIFO ``ready``: the namespace of ``pid`` is
    configured. Else kill pasta and raise, naming its own message.
    """
    pasta_fd = os.pidfd_open(process.pid)
    try:
        poller = select.poll()
        poller.register(ready, select.POLLIN)
        poller.register(pasta_fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        written = b""
        while not written.endswith(b"\n"):
            left = deadline - time.monotonic()
            events = dict(poller.poll(max(left, 0) * 1000)) if left > 0 else {}
            if ready in events:
                chunk = os.read(ready, 64)
                written += chunk
                if chunk:
                    continue
            if process.poll() is not None or ready in events:  # exited, or closed the FIFO unwritten
                if process.poll() is None:
                    process.kill()
                code = process.wait()
                raise processor_error(
                    f"pasta could not connect the sandbox (pid {pid}) to the network (exit code "
                    f"{code}): {output.message()}"
                )
            if not events:
                process.send_signal(signal.SIGKILL)
                process.wait()
                raise processor_error(
                    f"pasta did not configure the sandbox's network (pid {pid}) within {timeout:g} s: "
                    f"{output.message()}"
                )
    finally:
        os.close(pasta_fd)
