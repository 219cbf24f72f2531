"""The new-files trigger (airflow_byo.triggers.new_files): rebuilt from its kwargs, fires once or errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.ledger.snapshots import load_snapshot
from airflow_byo.new_files import NewFiles
from airflow_byo.sensors.new_files import ByoNewFilesSensor
from airflow_byo.storage import FileFilter
from airflow_byo.triggers.new_files import ByoNewFilesTrigger
from tests.conftest import context


def first_event(trigger: ByoNewFilesTrigger) -> Any:
    async def first() -> Any:
        return await trigger.run().__anext__()

    return asyncio.run(first())


def test_trigger_reports_errors_instead_of_dying(tmp_path: Path, ledger_conn: str) -> None:
    trigger = ByoNewFilesTrigger(
        {"source": str(tmp_path / "missing"), "flow_id": "dag.flow", "ledger_conn_id": ledger_conn},
        poke_interval=0.1,
    )
    event = first_event(trigger)
    assert event.payload["status"] == "error"
    assert "does not exist" in event.payload["message"]
    sensor = ByoNewFilesSensor(
        task_id="wait", source=str(tmp_path / "missing"), flow_id="dag.flow", ledger_conn_id=ledger_conn
    )
    with pytest.raises(ByoStorageError, match=r"waiting for new files in .* failed: .*does not exist"):
        sensor.execute_complete(context(), event.payload)


def test_trigger_fires_once_with_a_snapshot_of_the_selected_files(tmp_path: Path, ledger_conn: str) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for name in ("a.txt", "b.txt", "c.csv"):
        (source / name).write_text(name)
    new_files = NewFiles(
        str(source), "dag.flow", selection=FileFilter(include=("*.txt",)), ledger_conn_id=ledger_conn
    )
    classpath, kwargs = ByoNewFilesTrigger(new_files.to_kwargs(), poke_interval=0.1).serialize()
    assert classpath == "airflow_byo.triggers.new_files.ByoNewFilesTrigger"
    event = first_event(ByoNewFilesTrigger(**kwargs))
    assert event.payload["status"] == "found"
    assert (event.payload["listed"], event.payload["count"]) == (2, 2)
    assert event.payload["sample"] == ["a.txt", "b.txt"]
    assert new_files.ledger is not None
    snapshot = load_snapshot(new_files.ledger, event.payload["snapshot"])
    assert [f.relative_path for f in snapshot] == ["a.txt", "b.txt"]
