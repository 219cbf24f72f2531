"""
What the page's views show, as plain dicts: the flows list, one flow's detail (settings, code,
runs, ledger), the function library. The same dicts feed the HTML templates and the JSON API;
none holds a connection's secret (conn ids only, URLs without credentials).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from airflow_byo.plugins.flows import Flow, find_flows, processor_code, redact_url
from airflow_byo.plugins.ledger_view import ledger_status
from airflow_byo.plugins.run_history import recent_runs

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["dag_models", "flow_detail", "flow_row", "flow_rows", "library_index", "readable_dag_ids"]


def readable_dag_ids(user: Any) -> set[str]:
    """The DAGs ``user`` may read (the auth manager's answer)."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def dag_models(session: Session, dag_ids: set[str]) -> dict[str, Any]:
    """Airflow's ``DagModel`` rows (paused, schedule, file) of ``dag_ids``."""
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    rows = session.scalars(select(DagModel).where(DagModel.dag_id.in_(sorted(dag_ids)))).all()
    return {row.dag_id: row for row in rows}


def flow_row(flow: Flow, dag_model: Any, last: dict[str, Any] | None) -> dict[str, Any]:
    """One line of the flows page (and of ``GET /api/flows``): nothing secret, conn ids only."""
    settings = flow.settings
    return {
        "dag_id": flow.dag_id,
        "task_id": flow.task_id,
        "flow_id": flow.flow_id,
        "style": flow.style,
        "active": bool(dag_model is not None and not dag_model.is_paused),
        "schedule": getattr(dag_model, "timetable_summary", None) if dag_model is not None else None,
        "source": redact_url(settings.get("source")),
        "source_conn_id": settings.get("source_conn_id"),
        "destination": redact_url(settings.get("destination")),
        "destination_conn_id": settings.get("destination_conn_id"),
        "packages": settings.get("packages"),
        "runtime": flow.runtime,
        "ledger_conn_id": flow.ledger_conn_id,
        "description": flow.dag.get("description"),
        "tags": flow.dag.get("tags") or [],
        "last_run": last,
        "dag_url": f"/dags/{flow.dag_id}",
    }


def flow_rows(session: Session, user: Any) -> list[dict[str, Any]]:
    """Every flow ``user`` may read, with its last run."""
    flows = find_flows(session, readable_dag_ids(user))
    models = dag_models(session, {f.dag_id for f in flows})
    rows = []
    for flow in flows:
        runs = recent_runs(session, flow, limit=1)
        rows.append(flow_row(flow, models.get(flow.dag_id), runs[0] if runs else None))
    return rows


def _code(session: Session, flow: Flow, dag_model: Any) -> dict[str, Any]:
    from airflow.models.dagcode import DagCode

    source = None
    if not flow.spec_file:
        try:
            source = DagCode.code(flow.dag_id, session=session)
        except Exception:  # noqa: BLE001 -- no DagCode row yet: the page says why
            source = None
    code = processor_code(flow, getattr(dag_model, "fileloc", None), source)
    data = dataclasses.asdict(code)
    if data["packages"] is None:
        data["packages"] = flow.packages
    if data["runtime_config"] is None:
        data["runtime_config"] = flow.settings.get("runtime_config")
    return data


def flow_detail(session: Session, flow: Flow) -> dict[str, Any]:
    """One flow's page: its row, settings, processor code, recent runs and ledger."""
    dag_model = dag_models(session, {flow.dag_id}).get(flow.dag_id)
    runs = recent_runs(session, flow)
    row = flow_row(flow, dag_model, runs[0] if runs else None)
    return row | {
        "settings": {k: redact_url(v) for k, v in flow.settings.items()},
        "processor": _code(session, flow, dag_model),
        "runs": runs,
        "ledger": ledger_status(flow),
    }


def library_index(session: Session, user: Any) -> list[dict[str, Any]]:
    """Every library function with its versions, and which (readable) flows use which version."""
    from airflow_byo import library

    functions = library.list_functions()
    used: dict[str, list[dict[str, str]]] = {}
    spec_flows = [flow for flow in find_flows(session, readable_dag_ids(user)) if flow.spec_file]
    models = dag_models(session, {flow.dag_id for flow in spec_flows})
    for flow in spec_flows:
        ref = _spec_function(flow, getattr(models.get(flow.dag_id), "fileloc", None))
        if ref:
            name, _, version = ref.partition("@")
            if name in functions:
                resolved = version or str(functions[name][-1])
                used.setdefault(f"{name}@{resolved}", []).append(
                    {"dag_id": flow.dag_id, "task_id": flow.task_id}
                )
    result = []
    for name, versions in functions.items():
        latest = library.get(name)
        result.append(
            {
                "name": name,
                "versions": versions,
                "latest": latest.ref,
                "description": latest.description,
                "packages": latest.packages,
                "used_by": {f"{name}@{v}": used.get(f"{name}@{v}", []) for v in versions},
            }
        )
    return result


def _spec_function(flow: Flow, fileloc: str | None) -> str | None:
    """The library function (``name@version``) a spec flow uses, if any."""
    code = processor_code(flow, fileloc, None)
    marker = "(library function "
    return code.origin.split(marker, 1)[1].rstrip(")") if marker in code.origin else None
