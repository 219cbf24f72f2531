"""The new-files sensor (airflow_byo.sensors.new_files): poke, and deferring to its trigger."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_byo.ledger.snapshots import load_snapshot
from airflow_byo.ledger.state import Ledger
from airflow_byo.sensors.new_files import ByoNewFilesSensor
from airflow_byo.triggers.new_files import ByoNewFilesTrigger
from tests.conftest import context, tracked_flow


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
    result = tracked_flow(source, ledger_conn, files=pointer).execute(context())
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
