"""
The Test button's queue: one running Test per user, first come first served across users, queue
positions, Cancel of a queued Test and of a running one (its child process group killed).
"""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import pytest

from airflow_byo.plugins import trial_queue
from airflow_byo.plugins.trial_queue import TestJob, TestQueue, kill_thread_children


class Gate:
    """Work that runs until released, recording that it started."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, job: TestJob) -> dict[str, Any]:
        self.started.set()
        self.release.wait(600)
        return {"ok": True, "state": "done", "log": []}


def _job(user: str, work: Any, dag_id: str = "d") -> TestJob:
    return TestJob(user, dag_id, "flow", work=work)


def test_a_user_runs_one_test_at_a_time_and_others_still_get_a_slot() -> None:
    queue = TestQueue(slots=2)
    a1, a2, b1 = Gate(), Gate(), Gate()
    first = queue.submit(_job("alice", a1))
    second = queue.submit(_job("alice", a2))
    other = queue.submit(_job("bob", b1))
    assert a1.started.wait(30)
    assert b1.started.wait(30)  # alice's second Test does not take bob's slot
    where = queue.answer(second)
    assert (where["state"], where["position"], where["test_id"]) == ("queued", 1, second.id)
    assert queue.answer(first)["state"] == "running"
    a1.release.set()
    assert queue.answer(first, wait=None)["state"] == "done"
    assert a2.started.wait(30)  # alice's turn again
    a2.release.set()
    b1.release.set()
    assert queue.answer(second, wait=None)["ok"]
    assert queue.answer(other, wait=None)["ok"]


def test_the_queue_is_first_come_first_served_across_users() -> None:
    queue = TestQueue(slots=1)
    gates = {name: Gate() for name in ("a1", "b1", "c1", "a2")}
    jobs = {name: queue.submit(_job(name[0], gate)) for name, gate in gates.items()}
    assert gates["a1"].started.wait(30)
    assert [queue.answer(jobs[n])["position"] for n in ("b1", "c1", "a2")] == [1, 2, 3]
    order = []
    for name in ("a1", "b1", "c1", "a2"):
        assert gates[name].started.wait(30), name
        order.append(name)
        assert not any(gates[n].started.is_set() for n in gates if n not in order)
        gates[name].release.set()
        queue.answer(jobs[name], wait=None)
    assert order == ["a1", "b1", "c1", "a2"]


def test_cancel_takes_a_queued_test_out_of_the_queue() -> None:
    queue = TestQueue(slots=1)
    running, waiting = Gate(), Gate()
    first = queue.submit(_job("alice", running))
    second = queue.submit(_job("alice", waiting))
    answer = queue.cancel(second, by="alice")
    assert (answer["state"], answer["ok"]) == ("cancelled", False)
    assert answer["error"] == "Test cancelled by alice while queued"
    running.release.set()
    assert queue.answer(first, wait=None)["ok"]
    assert not waiting.started.is_set()


def test_cancel_kills_the_process_group_a_running_test_started() -> None:
    queue = TestQueue(slots=1)
    children: list[subprocess.Popen[bytes]] = []
    started = threading.Event()

    def work(job: TestJob) -> dict[str, Any]:
        # a child in its own session, as the sandbox starts it, with a grandchild of its own
        child = subprocess.Popen(
            ["sh", "-c", "sleep 600 & echo $!; wait"], stdout=subprocess.PIPE, start_new_session=True
        )
        children.append(child)
        started.set()
        child.wait()
        return {
            "ok": False,
            "state": "done",
            "error": "ChildDied",
            "log": [{"level": "info", "message": "x"}],
        }

    job = queue.submit(_job("alice", work))
    assert started.wait(30)
    assert children[0].stdout is not None
    grandchild = int(children[0].stdout.readline())
    answer = queue.cancel(job, by="bob")
    final = queue.answer(job, wait=None) if answer["state"] != "cancelled" else answer
    assert final["state"] == "cancelled"
    assert final["error"].startswith("Test cancelled by bob after ")
    assert final["error"].endswith("its process was killed")
    assert final["log"] == [{"level": "info", "message": "x"}]  # what it logged until then
    assert children[0].returncode == -9
    assert _dead(grandchild)  # its whole process group went
    # the slot came back
    after = Gate()
    after.release.set()
    assert queue.answer(queue.submit(_job("alice", after)), wait=None)["ok"]


def _dead(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (killed, not reaped yet), waiting a little for the kill."""
    for _ in range(500):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        threading.Event().wait(0.01)
    return False


def test_only_group_leaders_started_by_the_thread_are_killed() -> None:
    sleeper = subprocess.Popen(["sleep", "600"])  # same process group as the tests: never killed
    try:
        assert kill_thread_children(threading.get_native_id()) == 0
        assert sleeper.poll() is None
        assert kill_thread_children(999_999_999) == 0  # no such thread
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_user_may_queue_a_few_tests_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trial_queue, "MAX_QUEUED_PER_USER", 1)
    queue = TestQueue(slots=1)
    gate = Gate()
    first = queue.submit(_job("alice", gate))
    queued = queue.submit(_job("alice", Gate()))
    refused = queue.answer(queue.submit(_job("alice", Gate())))
    assert (refused["state"], refused["ok"]) == ("busy", False)
    assert "you have 1 Tests waiting already" in refused["error"]
    queue.cancel(queued, by="alice")
    gate.release.set()
    assert queue.answer(first, wait=None)["ok"]


def test_a_queued_test_nobody_asks_about_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = TestQueue(slots=1)
    gate = Gate()
    first = queue.submit(_job("alice", gate))
    forgotten_work = Gate()
    forgotten = queue.submit(_job("bob", forgotten_work))
    monkeypatch.setattr(trial_queue, "ABANDONED_SECONDS", -1.0)  # every queued Test is old now
    gate.release.set()
    queue.answer(first, wait=None)
    assert forgotten.result is not None
    assert forgotten.result["state"] == "abandoned"
    assert not forgotten_work.started.is_set()


def test_work_that_raises_gives_its_slot_back() -> None:
    queue = TestQueue(slots=1)

    def broken(job: TestJob) -> dict[str, Any]:
        raise OSError("disk full")

    answer = queue.answer(queue.submit(_job("alice", broken)), wait=None)
    assert (answer["ok"], answer["error"]) == (False, "OSError: disk full")
    gate = Gate()
    gate.release.set()
    assert queue.answer(queue.submit(_job("alice", gate)), wait=None)["ok"]
