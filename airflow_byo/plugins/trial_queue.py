"""
The Test button's queue in one api-server: a fair share of a few slots, queue positions, Cancel.

Each Test runs a sandboxed child process, and an api-server runs at most :data:`SLOTS` of them at
once. A user runs one Test at a time: their next one waits in the queue, which is served first
come, first served across users, passing over the users whose Test is running -- so an editor with
two endless Tests holds one slot, never all of them, and everyone else keeps testing.

**Cancel** takes a queued Test out of the queue, or kills a running one's sandboxed child: every
process group the Test's thread started (the child runs in a session of its own, so this is the
kill its timeout uses), again until the Test's thread has returned, so a child that was starting
at the time goes too. The thread then sees its child die and the Test ends as cancelled.

A queued Test nobody asks about any more (the browser was closed) is dropped after
:data:`ABANDONED_SECONDS`; a finished Test's answer is kept :data:`KEEP_SECONDS` for its poller.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["QUEUE", "TestJob", "TestQueue", "kill_thread_children"]

#: Tests running at once in one api-server (each is a sandboxed child process).
SLOTS = 2
#: Tests one user may have waiting; more are refused until one ran.
MAX_QUEUED_PER_USER = 3
#: A queued Test not asked about for this long is dropped (its page is gone).
ABANDONED_SECONDS = 30.0
#: How long a finished Test's answer waits for its poller.
KEEP_SECONDS = 600.0


@dataclass(eq=False)
class TestJob:
    """One Test: who asked, on which flow, the work to do, and where it is."""

    __test__ = False  # not a pytest test class

    user: str
    dag_id: str
    task_id: str
    work: Callable[[TestJob], dict[str, Any]]
    id: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    submitted: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)
    started: float | None = None
    thread_id: int | None = None  # the native id of the thread running it
    result: dict[str, Any] | None = None
    cancelled_by: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


def kill_thread_children(thread_id: int) -> int:
    """
    SIGKILL every process group whose leader the thread ``thread_id`` (of this process) started:
    Linux lists a thread's own children in ``/proc/self/task/<tid>/children``. Only session or
    group leaders are killed (the children of a run start a session of their own). Returns how
    many groups were killed.
    """
    try:
        with open(f"/proc/self/task/{thread_id}/children", encoding="ascii") as handle:
            pids = [int(pid) for pid in handle.read().split()]
    except OSError:  # the thread is gone
        return 0
    killed = 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
                killed += 1
    return killed


class TestQueue:
    """The slots, the queue and the recent Tests of this api-server (one instance: :data:`QUEUE`)."""

    __test__ = False

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._lock = threading.Condition()
        self._queue: list[TestJob] = []
        self._running: list[TestJob] = []
        self._jobs: dict[str, TestJob] = {}

    def submit(self, job: TestJob) -> TestJob:
        """Queue ``job`` (it starts at once when a slot is free and its user has none running)."""
        with self._lock:
            self._prune()
            waiting = sum(1 for queued in self._queue if queued.user == job.user)
            if waiting >= MAX_QUEUED_PER_USER:
                job.result = {
                    "ok": False,
                    "state": "busy",
                    "error": f"you have {waiting} Tests waiting already; wait for them or cancel one",
                }
                job.done.set()
                return job
            self._jobs[job.id] = job
            self._queue.append(job)
            self._dispatch()
        return job

    def get(self, test_id: str) -> TestJob | None:
        with self._lock:
            return self._jobs.get(test_id)

    def answer(self, job: TestJob, wait: float | None = 0.0) -> dict[str, Any]:
        """
        ``job``'s result once done, waiting up to ``wait`` seconds (None: until it is done); else
        where it is: ``state: queued`` with its ``position`` (1 = next), or ``state: running``.
        """
        deadline = None if wait is None else time.monotonic() + wait
        with self._lock:
            while not job.done.is_set():
                job.seen = time.monotonic()
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if left <= 0:
                    return self._where(job)
                self._lock.wait(left)
        assert job.result is not None
        return job.result | {"test_id": job.id}

    def cancel(self, job: TestJob, by: str) -> dict[str, Any]:
        """Take ``job`` out of the queue, or kill its running child; its answer as it stands."""
        with self._lock:
            if job.done.is_set():
                return self.answer(job)
            job.cancelled_by = by
            job.cancelled.set()
            if job in self._queue:
                self._queue.remove(job)
                self._finish(job, cancelled_result(job, log=[]))
                return self.answer(job)
        threading.Thread(target=self._kill_until_done, args=(job,), daemon=True).start()
        return self.answer(job, wait=2.0)

    # -- inside --------------------------------------------------------------------------------
    def _where(self, job: TestJob) -> dict[str, Any]:
        now = time.monotonic()
        if job in self._queue:
            return {
                "ok": True,
                "state": "queued",
                "test_id": job.id,
                "position": self._queue.index(job) + 1,
                "running": len(self._running),
                "seconds": round(now - job.submitted, 1),
            }
        return {
            "ok": True,
            "state": "running",
            "test_id": job.id,
            "seconds": round(now - (job.started or job.submitted), 1),
        }

    def _dispatch(self) -> None:
        """Start queued Tests while slots are free, oldest first, one per user (lock held)."""
        self._prune()
        while len(self._running) < self.slots:
            busy = {job.user for job in self._running}
            job = next((queued for queued in self._queue if queued.user not in busy), None)
            if job is None:
                return
            self._queue.remove(job)
            self._running.append(job)
            job.started = time.monotonic()
            threading.Thread(target=self._run, args=(job,), name=f"byo-test-{job.id}", daemon=True).start()

    def _run(self, job: TestJob) -> None:
        job.thread_id = threading.get_native_id()
        try:
            result = job.work(job)
        except Exception as exc:  # noqa: BLE001 -- the page shows it; the slot must come back
            result = {"ok": False, "state": "done", "error": f"{type(exc).__name__}: {exc}", "log": []}
        if job.cancelled.is_set():
            result = cancelled_result(job, log=result.get("log") or [])
        with self._lock:
            self._running.remove(job)
            self._finish(job, result)
            self._dispatch()

    def _finish(self, job: TestJob, result: dict[str, Any]) -> None:
        job.result = result
        job.seen = time.monotonic()
        job.done.set()
        self._lock.notify_all()

    def _kill_until_done(self, job: TestJob) -> None:
        """Kill the Test's children until its thread returns (a child starting now goes too)."""
        while not job.done.wait(0.05):
            if job.thread_id is not None:
                kill_thread_children(job.thread_id)

    def _prune(self) -> None:
        """Forget finished Tests after KEEP_SECONDS; drop queued ones nobody asks about (lock held)."""
        now = time.monotonic()
        for job in [j for j in self._queue if now - j.seen > ABANDONED_SECONDS]:
            self._queue.remove(job)
            self._finish(job, {"ok": False, "state": "abandoned", "error": "nobody waited for this Test"})
        for test_id, job in list(self._jobs.items()):
            if job.done.is_set() and now - job.seen > KEEP_SECONDS:
                del self._jobs[test_id]


def cancelled_result(job: TestJob, log: list[dict[str, str]]) -> dict[str, Any]:
    """The answer of a cancelled Test: who cancelled it, when, and what it logged until then."""
    ran = (
        f"after {time.monotonic() - job.started:.1f} s; its process was killed"
        if job.started
        else "while queued"
    )
    return {
        "ok": False,
        "state": "cancelled",
        "error": f"Test cancelled by {job.cancelled_by or 'its user'} {ran}",
        "log": log,
        "seconds": round(time.monotonic() - job.submitted, 3),
    }


#: The api-server's one queue.
QUEUE = TestQueue()
