"""
Claims of dead runs (issue 13 point 4): who holds a claim, whether that run is provably dead, the
takeover of a dead run's claims, and the report of the claims of runs that may be alive. Only the
Task SDK call (``RuntimeTaskInstance.get_task_states``) is faked; processes are real.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
from sqlalchemy import insert

from airflow_byo.ledger.holders import held_files
from airflow_byo.ledger.runs import RunIdentity, process_scope
from airflow_byo.ledger.schema import runs
from airflow_byo.ledger.state import Ledger
from airflow_byo.ledger.tracking import LedgerTracker
from airflow_byo.results import FileResult
from tests.ledger.conftest import files

HOST = socket.gethostname()


def hold(ledger: Ledger, names: list[str], run: RunIdentity, lease: float = 120) -> None:
    """``run`` (recorded in byo_runs, as its LedgerTracker would) claims ``names``."""
    with ledger.engine.begin() as connection:
        connection.execute(insert(runs).values(**run.__dict__))
    assert len(ledger.claim(files(*names), run.token, lease)) == len(names)


def other_host(token: str = "b" * 32, **task: Any) -> RunIdentity:
    return RunIdentity(
        token=token,
        flow_id="dag.task",
        host="worker-7",
        process_scope="worker-7/boot/pidns:1",
        pid=4242,
        process_started=1.0e9,
        started=1.7e9,
        **task,
    )


@pytest.fixture
def me() -> RunIdentity:
    return RunIdentity.current("dag.task")


@pytest.fixture
def dead_pid() -> int:
    """The PID of a process of this machine that has exited (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


class FakeTaskStates:
    """The Task SDK's answer about task instances: ``states`` (or ``error``); ``calls`` made."""

    def __init__(self) -> None:
        self.states: dict[str, Any] = {}
        self.error: Exception | None = None
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return self.states


@pytest.fixture
def task_states(monkeypatch: pytest.MonkeyPatch) -> FakeTaskStates:
    """Fake only the Task SDK call boundary: ``RuntimeTaskInstance.get_task_states``."""
    fake = FakeTaskStates()
    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(fake))
    return fake


def this_host(pid: int, started: float | None, token: str = "d" * 32) -> RunIdentity:
    return RunIdentity(
        token=token,
        flow_id="dag.task",
        host=HOST,
        process_scope=process_scope(),
        pid=pid,
        process_started=started,
        started=time.time(),
    )


def test_a_dead_process_on_this_host_has_its_claims_taken_over(
    ledger: Ledger, me: RunIdentity, dead_pid: int
) -> None:
    dead = this_host(dead_pid, time.time() - 5)
    hold(ledger, ["a.csv", "b.csv"], dead)
    held = held_files(ledger, me)
    assert held.count == 0
    [taken] = held.taken_over
    assert (taken.token, taken.files) == (dead.token, 2)
    assert taken.reason == f"process {dead_pid} on {HOST} is gone"
    assert taken.description == dead.describe()
    assert f"(host {HOST}, pid {dead_pid}, not in an Airflow task, started " in taken.description
    records = {r["path"]: r for r in ledger.records()}
    assert {r["state"] for r in records.values()} == {"failed"}
    assert records["a.csv"]["error"] == f"taken over from {dead.describe()}: {taken.reason}"
    event = ledger.history("a.csv")[-1]
    assert event["event"] == "taken_over"
    assert event["details"] == {
        "from": dead.token,
        "holder": dead.describe(),
        "reason": taken.reason,
        "by": me.token,
    }
    # this run claims them as usual; the dead run's attempt counts
    with LedgerTracker(ledger, lease_seconds=60, run=me) as tracker:
        won = list(tracker.claimed(ledger.new_files(files("a.csv", "b.csv"))))
        assert [f.relative_path for f in won] == ["a.csv", "b.csv"]
        for file in won:
            tracker.settle(file, FileResult(url=file.url, status="processed"), False)
    assert {r["attempts"] for r in ledger.records()} == {2}
    assert held_files(ledger, me).taken_over == ()  # taken over once


def test_a_reused_pid_is_told_apart_by_the_process_start_time(
    ledger: Ledger, me: RunIdentity, live_process: subprocess.Popen[bytes]
) -> None:
    import psutil

    started = psutil.Process(live_process.pid).create_time()
    hold(ledger, ["a.csv"], this_host(live_process.pid, started - 300))  # same PID, an older process
    [taken] = held_files(ledger, me).taken_over
    assert (
        taken.reason
        == f"process {live_process.pid} on {HOST} is gone (that PID belongs to a newer process now)"
    )


def test_a_live_process_on_this_host_keeps_its_claims_and_is_reported(
    ledger: Ledger, me: RunIdentity, live_process: subprocess.Popen[bytes]
) -> None:
    import psutil

    alive = this_host(live_process.pid, psutil.Process(live_process.pid).create_time())
    before = time.time()
    hold(ledger, ["a.csv", "b.csv", "c.csv"], alive, lease=120)
    held = held_files(ledger, me)
    assert held.taken_over == ()
    [holder] = held.holders
    assert (holder.token, holder.files, holder.paths) == (alive.token, 3, ("a.csv", "b.csv", "c.csv"))
    assert holder.description == alive.describe()
    assert before + 119 < holder.until <= time.time() + 120
    assert held.count == 3
    assert ledger.counts() == {"claimed": 3}  # untouched


def test_a_holder_on_another_host_outside_airflow_is_reported_not_taken_over(
    ledger: Ledger, me: RunIdentity, caplog: pytest.LogCaptureFixture
) -> None:
    # Not in a task: the real Task SDK call cannot be made (no supervisor), so nothing is known.
    hold(
        ledger, ["a.csv"], other_host(dag_id="etl", run_id="r1", task_id="clean", map_index=-1, try_number=1)
    )
    held = held_files(ledger, me)
    assert held.taken_over == ()
    assert "Cannot ask Airflow" not in caplog.text  # known to be outside a task, not an error
    assert held.holders[0].description.startswith(
        "run bbbbbbbb (host worker-7, pid 4242, dag etl, run r1, task clean, try 1, started "
    )


@pytest.mark.parametrize(
    ("map_index", "states", "reason"),
    [
        (
            -1,
            {"r1": {"clean": "failed"}},
            "its task instance is failed, no longer running (Airflow task state)",
        ),
        (-1, {"r1": {"clean": "up_for_retry"}}, "its task instance is up_for_retry, no longer running"),
        (3, {"r1": {"clean_3": "success"}}, "its task instance is success, no longer running"),
        (-1, {}, "its task instance is not found, no longer running"),
    ],
)
def test_a_holder_whose_task_instance_is_not_running_is_taken_over(
    ledger: Ledger, me: RunIdentity, task_states: FakeTaskStates, map_index: int, states: Any, reason: str
) -> None:
    task_states.states = states
    hold(
        ledger,
        ["a.csv"],
        other_host(dag_id="etl", run_id="r1", task_id="clean", map_index=map_index, try_number=1),
    )
    [taken] = held_files(ledger, me).taken_over
    assert taken.reason.startswith(reason)
    assert task_states.calls == [
        {"dag_id": "etl", "map_index": map_index, "task_ids": ["clean"], "run_ids": ["r1"]}
    ]
    assert ledger.counts() == {"failed": 1}


@pytest.mark.parametrize("state", ["running", "restarting"])
def test_a_holder_whose_task_instance_runs_is_reported(
    ledger: Ledger, me: RunIdentity, task_states: FakeTaskStates, state: str
) -> None:
    task_states.states = {"r1": {"clean": state}}
    hold(
        ledger, ["a.csv"], other_host(dag_id="etl", run_id="r1", task_id="clean", map_index=-1, try_number=1)
    )
    held = held_files(ledger, me)
    assert (held.taken_over, held.count) == ((), 1)


def test_when_airflow_cannot_be_asked_the_holder_counts_as_alive(
    ledger: Ledger, me: RunIdentity, task_states: FakeTaskStates, caplog: pytest.LogCaptureFixture
) -> None:
    task_states.error = ConnectionError("api-server unreachable")
    hold(
        ledger, ["a.csv"], other_host(dag_id="etl", run_id="r1", task_id="clean", map_index=-1, try_number=1)
    )
    assert held_files(ledger, me).count == 1
    assert "Cannot ask Airflow for the state of etl.clean in r1: api-server unreachable" in caplog.text


def test_an_earlier_try_of_this_task_instance_is_dead(ledger: Ledger, task_states: FakeTaskStates) -> None:
    task_states.states = {"r1": {"clean": "running"}}  # the TI runs: it is this very try
    key = {"dag_id": "etl", "run_id": "r1", "task_id": "clean", "map_index": -1}
    hold(ledger, ["a.csv"], other_host(**key, try_number=1))
    me = replace(RunIdentity.current("dag.task"), **key, try_number=2)
    [taken] = held_files(ledger, me).taken_over
    assert taken.reason == "it was try 1 of this task instance, which now runs try 2"


def test_a_run_of_this_process_is_dead_once_its_tracker_has_exited(ledger: Ledger, me: RunIdentity) -> None:
    earlier = RunIdentity.current("dag.task")
    with LedgerTracker(ledger, lease_seconds=60, run=earlier) as tracker:
        next(tracker.claimed(files("a.csv")))
        assert held_files(ledger, me).count == 1  # open: alive
        # the run's give-back on exit fails (as if its database connection broke): the claim stays
        ledger.release = lambda *args: None  # type: ignore[method-assign]
    [taken] = held_files(ledger, me).taken_over
    assert taken.reason == f"its run in this process (pid {os.getpid()}) has ended"


def test_a_claim_without_a_recorded_run_is_reported(ledger: Ledger, me: RunIdentity) -> None:
    ledger.claim(files("a.csv"), "c" * 32, 120)  # as a run of airflow-byo 0.1.0 claimed
    [holder] = held_files(ledger, me).holders
    assert holder.description == "run cccccccc (unknown: its claim predates the ledger's record of runs)"


def test_status_sees_without_taking_over(ledger: Ledger, me: RunIdentity, dead_pid: int) -> None:
    dead = this_host(dead_pid, time.time() - 5)
    hold(ledger, ["a.csv"], dead)
    [holder] = held_files(ledger, me, take_over=False).holders
    assert holder.dead == f"process {dead_pid} on {HOST} is gone"
    assert ledger.counts() == {"claimed": 1}


def test_the_report_names_holders_and_expiry(ledger: Ledger, me: RunIdentity) -> None:
    run = other_host(dag_id="etl", run_id="r1", task_id="clean", map_index=2, try_number=3)
    hold(ledger, ["a.csv", "b.csv"], run)
    held = held_files(ledger, me)
    [holder] = held.holders
    until = holder.line().rsplit(" until ", 1)[1]
    who = (
        "1 other run(s): run bbbbbbbb (host worker-7, pid 4242, dag etl, run r1, task clean, map index 2, "
        f"try 3, started 2023-11-14T22:13:20+00:00): 2 file(s) until {until}"
    )
    assert held.message("dag.task") == (
        f"2 file(s) of flow 'dag.task' are claimed by {who}. This run skips them: if that run is working "
        "they are processed there; if it died, a run after the claims expire takes them over "
        "(job_config.lease_seconds sets how long a claim lives; job_config.on_held: 'wait' waits for "
        "them, 'fail' fails the task). See `airflow byo ledger status dag.task`"
    )
    assert held.error("dag.task") == (
        f"2 file(s) of flow 'dag.task' are held by {who}; job_config.on_held is 'fail'. The last claim "
        f"expires at {until} unless its run renews it (it is alive then, and processes them); a run "
        "after that takes them over. Set job_config.on_held to 'wait' to wait for them or 'succeed' to "
        "only report them; `airflow byo ledger status dag.task` lists them"
    )
