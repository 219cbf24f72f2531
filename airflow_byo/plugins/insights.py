"""
Flow insights for the page: run summaries from the task's XCom, files from the ledger.

Every run of a flow pushes its summary (:meth:`airflow_byo.summary.RunSummary.as_dict`) as the
task's ``return_value`` XCom, also when files failed; the ledger holds each file's state.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_byo.plugins.flows import Flow

__all__ = ["ledger_status", "new_files_count", "recent_runs", "redact_url", "replay"]

_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)
#: The summary counters the page shows per run.
COUNTS = ("files_seen", "files_processed", "files_failed", "files_quarantined", "records_out", "bytes_out")


def redact_url(value: Any) -> Any:
    """A URL without ``user:password@`` (secrets live in connections, but a URL may carry some)."""
    return _USERINFO.sub(r"\1***@", value) if isinstance(value, str) else value


def recent_runs(session: Session, flow: Flow, limit: int = 20) -> list[dict[str, Any]]:
    """The flow's latest runs, newest first: run id, state, times, and its summary's counts."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
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
    tasks = {
        row.run_id: row
        for row in session.execute(
            select(TaskInstance.run_id, TaskInstance.state, TaskInstance.end_date).where(
                TaskInstance.dag_id == flow.dag_id,
                TaskInstance.task_id == flow.task_id,
                TaskInstance.run_id.in_(run_ids),
                TaskInstance.map_index == -1,
            )
        ).all()
    }
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
    result = []
    for run in runs:
        task = tasks.get(run.run_id)
        summary = summaries.get(run.run_id) or {}
        result.append(
            {
                "run_id": run.run_id,
                "state": _text(task.state if task and task.state else run.state),
                "run_after": run.run_after.isoformat() if run.run_after else None,
                "end_date": (task.end_date or run.end_date).isoformat()
                if task and (task.end_date or run.end_date)
                else None,
                **{name: summary.get(name) for name in COUNTS},
                "insights": summary.get("insights") or {},
                "seconds_total": summary.get("seconds_total"),
            }
        )
    return result


def _text(state: Any) -> str:
    return str(getattr(state, "value", state))


def ledger_status(flow: Flow) -> dict[str, Any]:
    """Files per state (new, done, failed, quarantined, held) and the failed/quarantined ones."""
    from airflow_byo.ledger.schema import FAILED, QUARANTINED
    from airflow_byo.ledger.state import Ledger

    try:
        ledger = Ledger.of(flow.flow_id)
        counts = ledger.counts()
        problems = [
            {
                "path": r["path"],
                "state": r["state"],
                "attempts": r.get("attempts"),
                "updated": r.get("updated"),
                "error": (r.get("error") or "")[:500],
            }
            for r in ledger.records([QUARANTINED, FAILED])[:200]
        ]
    except Exception as exc:  # noqa: BLE001 -- the page still shows everything else
        return {"counts": {}, "problems": [], "error": f"ledger unavailable: {type(exc).__name__}: {exc}"}
    return {"counts": counts, "problems": problems, "error": None}


def replay(flow: Flow, pattern: str) -> int:
    """Quarantined files matching ``pattern`` are processed again by the next run."""
    from airflow_byo.ledger.schema import QUARANTINED
    from airflow_byo.ledger.state import Ledger

    return Ledger.of(flow.flow_id).forget(pattern=pattern, states=[QUARANTINED], reason="replay from the UI")


def new_files_count(flow: Flow, listing: list[dict[str, Any]]) -> int | None:
    """How many listed files the ledger has never seen (the next run's new files)."""
    from airflow_byo.ledger.state import Ledger

    try:
        known = {r["path"] for r in Ledger.of(flow.flow_id).records()}
    except Exception:  # noqa: BLE001 -- shown as unknown
        return None
    return sum(1 for f in listing if f["name"] not in known)
