"""
A flow's run history for the page: each run's state and times, and its summary's counts.

Every run of a flow pushes its summary (:meth:`airflow_byo.results.RunSummary.as_dict`) as the
task's ``return_value`` XCom, also when files failed; the page reads it back from Airflow's
metadata database (never from the workers). The ledger's side of the page is
:mod:`airflow_byo.plugins.ledger_view`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_byo.plugins.flows import Flow

__all__ = ["recent_runs"]

#: The summary counters the page shows per run.
COUNTS = ("files_seen", "files_processed", "files_failed", "files_quarantined", "records_out", "bytes_out")


def recent_runs(session: Session, flow: Flow, limit: int = 20) -> list[dict[str, Any]]:
    """
    The flow's latest runs, newest first: run id, state, times, its summary's counts, insights,
    counters and how many notifications its function sent.
    """
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    runs = session.execute(
        select(DagRun.run_id, DagRun.state, DagRun.run_after, DagRun.end_date)
        .where(DagRun.dag_id == flow.dag_id)
        .order_by(DagRun.run_after.desc())
        .limit(limit)
    ).all()
    if not runs:
        return []
    run_ids = [r.run_id for r in runs]
    tasks = _task_instances(session, flow, run_ids)
    summaries = _summaries(session, flow, run_ids)
    return [_run_row(run, tasks.get(run.run_id), summaries.get(run.run_id) or {}) for run in runs]


def _task_instances(session: Session, flow: Flow, run_ids: list[str]) -> dict[str, Any]:
    """The flow task's instance (state, end) in each of ``run_ids``."""
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    rows = session.execute(
        select(TaskInstance.run_id, TaskInstance.state, TaskInstance.end_date).where(
            TaskInstance.dag_id == flow.dag_id,
            TaskInstance.task_id == flow.task_id,
            TaskInstance.run_id.in_(run_ids),
            TaskInstance.map_index == -1,
        )
    ).all()
    return {row.run_id: row for row in rows}


def _summaries(session: Session, flow: Flow, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The run summary the flow task pushed (its ``return_value`` XCom) in each of ``run_ids``."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    summaries = {}
    for row in session.execute(
        select(XComModel.run_id, XComModel.value).where(
            XComModel.dag_id == flow.dag_id,
            XComModel.task_id == flow.task_id,
            XComModel.key == "return_value",
            XComModel.run_id.in_(run_ids),
        )
    ).all():
        value = XComModel.deserialize_value(row)
        if isinstance(value, dict):
            summaries[row.run_id] = value
    return summaries


def _run_row(run: Any, task: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """One run as the page shows it: the task's state and end when it ran, else the DAG run's."""
    ended = (task.end_date or run.end_date) if task else None
    return {
        "run_id": run.run_id,
        "state": _text(task.state if task and task.state else run.state),
        "run_after": run.run_after.isoformat() if run.run_after else None,
        "end_date": ended.isoformat() if ended else None,
        **{name: summary.get(name) for name in COUNTS},
        "insights": summary.get("insights") or {},
        "counters": summary.get("counters") or {},
        "notifications": summary.get("notifications") or 0,
        "seconds_total": summary.get("seconds_total"),
    }


def _text(state: Any) -> str:
    return str(getattr(state, "value", state))
