"""The new-files sensor (poke and deferrable), its trigger, and the batch planner for mapped tasks."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_byo.ledger.snapshots import load_snapshot
from airflow_byo.ledger.state import Ledger
from airflow_byo.operators.byo_flow import ByoFlowOperator
from airflow_byo.operators.plan_batches import ByoBatchPlanOperator
from airflow_byo.sensors.new_files import ByoNewFilesSensor
from airflow_byo.triggers.new_files import ByoNewFilesTrigger
from tests.operators.test_byo_flow import context

UPPER = "def process(file, ctx):\n    return file.open().read().upper()\n"


@pytest.fixture
def ledger_conn(ledger_db: dict[str, Any], connections: Any) -> str:
    return connections("byo_ledger", ledger_db["connection"])


@pytest.fixture
def source(tmp_path: Path) -> Path:
    directory = tmp_path / "in"
    directory.mkdir()
    return directory


def sensor(source: Path, ledger_conn: str, **kwargs: Any) -> ByoNewFilesSensor:
    return ByoNewFilesSensor(
        task_id="wait",
        source=str(source),
        flow_id="dag.flow",
        include="*.txt",
        ledger_conn_id=ledger_conn,
        poke_interval=0.1,
        timeout=30,
        **kwargs,
    )


def flow(source: Path, ledger_conn: str, **kwargs: Any) -> ByoFlowOperator:
    return ByoFlowOperator(
        task_id="flow",
        flow_id="dag.flow",
        source=str(source),
        include="*.txt",
        destination=str(source.parent / "out"),
        processor=UPPER,
        python_interpreter=sys.executable,
        ledger_conn_id=ledger_conn,
        runtime_config={"job_config": {"output_format": "text"}},
        **kwargs,
    )


def test_poke_finds_new_files_and_hands_a_snapshot_to_the_flow(source: Path, ledger_conn: str) -> None:
    task = sensor(source, ledger_conn)
    assert task.poke(context()).is_done is False
    (source / "a.txt").write_text("a")
    (source / "skip.csv").write_text("no")
    found = task.poke(context())
    assert found.is_done is True
    pointer = found.xcom_value
    assert pointer["count"] == 1
    assert pointer["sample"] == ["a.txt"]
    (source / "b.txt").write_text("b")  # arrives after the sensor: next run's business
    result = flow(source, ledger_conn, files=pointer).execute(context())
    assert result["files_processed"] == 1
    assert sorted(p.name for p in (source.parent / "out").iterdir()) == ["a.txt"]
    # Processed files do not wake the sensor again; the late one does.
    assert task.poke(context()).xcom_value["sample"] == ["b.txt"]


def test_deferrable_sensor_returns_at_once_when_files_are_there(source: Path, ledger_conn: str) -> None:
    (source / "a.txt").write_text("a")
    assert sensor(source, ledger_conn, deferrable=True).execute(context())["count"] == 1


def test_deferrable_sensor_defers_to_the_trigger(source: Path, ledger_conn: str) -> None:
    task = sensor(source, ledger_conn, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, ByoNewFilesTrigger)
    assert deferred.value.method_name == "execute_complete"

    # serialize() round trip: the triggerer rebuilds the trigger from its classpath and kwargs.
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["new_files"]["source"] == str(source)
    assert kwargs["new_files"]["include"] == ["*.txt"]

    async def first_event() -> Any:
        events = rebuilt.run()
        waiter = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.5)
        assert not waiter.done(), "the trigger must keep waiting while there is nothing new"
        (source / "late.txt").write_text("late")
        return await asyncio.wait_for(waiter, timeout=20)

    event = asyncio.run(first_event())
    assert event.payload["status"] == "found"
    assert event.payload["sample"] == ["late.txt"]
    pointer = task.execute_complete(context(), event.payload)
    assert (
        load_snapshot(Ledger("dag.flow", kwargs_url(ledger_conn)), pointer["snapshot"])[0].relative_path
        == "late.txt"
    )


def kwargs_url(conn_id: str) -> str:
    from airflow_byo.ledger.state import ledger_url

    return ledger_url(conn_id)


def test_trigger_reports_errors_instead_of_dying(tmp_path: Path, ledger_conn: str) -> None:
    trigger = ByoNewFilesTrigger(
        {"source": str(tmp_path / "missing"), "flow_id": "dag.flow", "ledger_conn_id": ledger_conn},
        poke_interval=0.1,
    )

    async def first() -> Any:
        return await trigger.run().__anext__()

    event = asyncio.run(first())
    assert event.payload["status"] == "error"
    assert "does not exist" in event.payload["message"]
    with pytest.raises(Exception, match=r"waiting for new files in .* failed: .*does not exist"):
        sensor(tmp_path / "missing", ledger_conn).execute_complete(context(), event.payload)


def test_planner_splits_new_files_into_disjoint_batches(
    source: Path, ledger_conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(25):
        (source / f"f{index:02d}.txt").write_text(str(index))
    planner = ByoBatchPlanOperator(
        task_id="plan",
        source=str(source),
        flow_id="dag.flow",
        include="*.txt",
        files_per_batch=10,
        ledger_conn_id=ledger_conn,
    )
    batches = planner.execute(context())
    assert [(b["batch"], b["of"]) for b in batches] == [(0, 3), (1, 3), (2, 3)]
    processed = [
        flow(source, ledger_conn, files=batch).execute(context())["files_processed"] for batch in batches
    ]
    assert sum(processed) == 25
    assert len(list((source.parent / "out").iterdir())) == 25
    assert planner.execute(context()) == []  # nothing new: nothing to map

    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    for index in range(25, 60):
        (source / f"f{index:02d}.txt").write_text(str(index))
    assert len(planner.execute(context())) == 2  # capped by [core] max_map_length


def test_flow_rejects_a_bad_files_pointer(source: Path, ledger_conn: str) -> None:
    with pytest.raises(
        Exception, match=r"files must be a sensor's or planner's XCom like \{'snapshot': '<id>'\}"
    ):
        flow(source, ledger_conn, files={"count": 3}).execute(context())
