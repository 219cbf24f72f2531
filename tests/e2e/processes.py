"""
Processes and machine services of the end-to-end deployment: one ``airflow`` component as a
process group (stopped or SIGKILLed as a whole, with everything under it), the machine's
PostgreSQL and Redis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_PORT = 6379


class DeploymentError(AssertionError):
    """A wait of the deployment timed out or a component died; the message has the log tails."""


@dataclass
class Component:
    """One long-running ``airflow`` process of the deployment."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    #: Size of the log when this process started (a restarted worker appends to the same log).
    start_offset: int = 0
    #: Set by :meth:`kill`: a deliberate death, not a failure of the deployment.
    killed: bool = False
    _log: Any = field(default=None, repr=False)

    def start(self) -> None:
        self.start_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.env["AIRFLOW_HOME"],
            start_new_session=True,  # its own process group: stopped (or killed) as a whole
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tree(self) -> list[int]:
        """The process and all its descendants (task supervisors, task processes, byo children)."""
        import psutil

        if self.process is None:
            return []
        try:
            parent = psutil.Process(self.process.pid)
            return [parent.pid, *(child.pid for child in parent.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """CPU time used so far by the tree, including its children that have already exited."""
        import psutil

        total = 0.0
        for pid in self.tree():
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    def kill(self) -> list[int]:
        """SIGKILL the whole tree at once, as when the machine dies. Returns the pids signalled."""
        pids = self.tree()
        self.killed = True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap()
        return pids

    def terminate(self) -> list[int]:
        """Send SIGTERM to the process group; returns the tree to kill if it does not go."""
        pids = self.tree()
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
        return pids

    def _reap(self) -> None:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def tail(path: Path, lines: int) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def pg_admin() -> Any:
    import psycopg2

    connection = psycopg2.connect(dbname="postgres", **PG)
    connection.autocommit = True
    try:
        yield connection.cursor()
    finally:
        connection.close()


def redis_db(db: int) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=db, socket_timeout=5)


def claim_redis_db() -> int:
    """An empty Redis database number (1-15), marked as taken by this deployment."""
    token = uuid.uuid4().hex
    for db in range(1, 16):
        client = redis_db(db)
        if client.dbsize() == 0 and client.set("byo-e2e-owner", token, nx=True):
            return db
    raise DeploymentError("no empty Redis database among 1-15 at 127.0.0.1:6379 (FLUSHDB a stale one)")


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def ensure_services() -> None:
    """
    Make sure the machine's PostgreSQL and Redis answer on 127.0.0.1; start them when down (the
    machine normally starts both before a session; a stopped one is restarted the same way).
    """
    if not listening(PG["port"]):
        clusters = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if clusters:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", clusters[-1], "main", "start"],
                check=False,
                capture_output=True,
            )
    if not listening(REDIS_PORT):
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=False,
            capture_output=True,
        )
    deadline = time.monotonic() + 30
    while not (listening(PG["port"]) and listening(REDIS_PORT)):
        if time.monotonic() > deadline:
            raise DeploymentError("PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) must be running")
        time.sleep(0.5)
