"""The batch planner (airflow_byo.operators.plan_batches): new files split into mapped-task batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.operators.plan_batches import ByoBatchPlanOperator
from tests.conftest import context, tracked_flow


@pytest.fixture
def source(tmp_path: Path) -> Path:
    directory = tmp_path / "in"
    directory.mkdir()
    return directory


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
    results = [tracked_flow(source, ledger_conn, files=batch).execute(context()) for batch in batches]
    processed = [result["files_processed"] for result in results]
    assert sum(processed) == 25
    assert len(list((source.parent / "out").iterdir())) == 25
    assert planner.execute(context()) == []  # nothing new: nothing to map

    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    for index in range(25, 60):
        (source / f"f{index:02d}.txt").write_text(str(index))
    assert len(planner.execute(context())) == 2  # capped by [core] max_map_length


def test_files_per_batch_must_be_positive() -> None:
    with pytest.raises(ByoConfigError, match=r"files_per_batch must be at least 1, got 0"):
        ByoBatchPlanOperator(task_id="plan", source="/in", flow_id="dag.flow", files_per_batch=0)
