"""
What the page's views show, as plain dicts: the flows list, one flow's detail (settings, code,
runs, ledger), the function library. The same dicts feed the HTML templates and the JSON API;
none holds a connection's secret (conn ids only, URLs without credentials).

Each row says what its settings mean for a reader: the schedule as "manual", "on new files" or
Airflow's summary; a mapped flow's source and destination from its partial arguments; which task
sets the files of a flow that gets them from a sensor or planner (``files_from``); whether the
user may edit the DAG (the page's Activate/Pause), and whether its spec is one the flow editor
edits (a file of ``[byo] spec_folder``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import TYPE_CHECKING, Any, Literal

from airflow_byo.plugins.flows import Flow, flows_of_dag, processor_code, redact_url
from airflow_byo.plugins.ledger_view import ledger_status
from airflow_byo.plugins.run_history import recent_runs

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "dag_models",
    "find_flows",
    "flow_detail",
    "flow_row",
    "flow_rows",
    "library_index",
    "readable_dag_ids",
    "schedule_text",
]

_XCOM_TASK = re.compile(r"xcom_pull\(task_ids=['\"]([^'\"]+)['\"]")
_NEW_FILES_URI = "x-byo-new-files://"


def readable_dag_ids(user: Any, method: Literal["GET", "PUT"] = "GET") -> set[str]:
    """The DAGs ``user`` may read (or, with ``method="PUT"``, edit): the auth manager's answer."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method=method))


def find_flows(session: Session, dag_ids: set[str] | None = None) -> list[Flow]:
    """
    Every BYO flow of the latest serialized version of every (readable) DAG, mapped ones with
    their partial arguments as settings, and ``files_from``: the task whose XCom gives the files.
    """
    from airflow.models.serialized_dag import SerializedDagModel

    rows = session.scalars(
        SerializedDagModel._latest_by_version_select(sorted(dag_ids) if dag_ids is not None else None)
    )
    flows = [flow for row in rows for flow in _flows_with_arguments(row.data or {})]
    return sorted(flows, key=lambda f: (f.dag_id, f.task_id))


def _flows_with_arguments(data: dict[str, Any]) -> list[Flow]:
    """:func:`flows_of_dag`, with a mapped task's ``partial_kwargs`` as its own arguments."""
    dag = data.get("dag") or {}
    tasks, files_from = [], {}
    for task in dag.get("tasks") or []:
        var = task.get("__var", task)
        if var.get("_is_mapped"):
            expanded = (var.get("expand_input") or {}).get("value") or {}
            files = (expanded.get("__var", expanded) or {}).get("files") or {}
            files_from[var.get("task_id")] = (files.get("__var") or {}).get("task_id")
            var = {**(var.get("partial_kwargs") or {}), **var}
        elif isinstance(var.get("files"), str) and (found := _XCOM_TASK.search(var["files"])):
            files_from[var.get("task_id")] = found.group(1)
        tasks.append(var)
    flows = flows_of_dag({**data, "dag": {**dag, "tasks": tasks}})
    for flow in flows:
        if files_from.get(flow.task_id):
            flow.settings["files_from"] = files_from[flow.task_id]
    return flows


def schedule_text(flow: Flow, dag_model: Any) -> str:
    """The flow's schedule as a reader means it: manual, on new files, on asset events, or a cron/preset."""
    timetable = flow.dag.get("timetable") or {}
    kind = str(timetable.get("__type") or "").rsplit(".", 1)[-1]
    if kind == "NullTimetable":
        return "manual"
    if kind == "AssetTriggeredTimetable":
        uris = re.findall(r'"uri": "([^"]*)"', json.dumps(timetable))
        return "on new files" if any(uri.startswith(_NEW_FILES_URI) for uri in uris) else "on asset events"
    summary = getattr(dag_model, "timetable_summary", None)
    if summary in (None, "", "None"):  # no DagModel row yet: what the serialized timetable says
        summary = (timetable.get("__var") or {}).get("expression") or kind.removesuffix("Timetable")
    return str(summary or "manual")


def editable_spec(flow: Flow, fileloc: str | None) -> bool:
    """Whether ``flow`` is a spec of ``[byo] spec_folder``: one the flow editor edits."""
    from airflow_byo.provider_config import setting

    folder = setting("spec_folder")
    if not flow.spec_file or not folder:
        return False
    path = flow.spec_file
    if not os.path.isabs(path) and fileloc:
        path = os.path.join(os.path.dirname(fileloc), path)
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(folder)


def dag_models(session: Session, dag_ids: set[str]) -> dict[str, Any]:
    """Airflow's ``DagModel`` rows (paused, schedule, file) of ``dag_ids``."""
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    rows = session.scalars(select(DagModel).where(DagModel.dag_id.in_(sorted(dag_ids)))).all()
    return {row.dag_id: row for row in rows}


def flow_row(
    flow: Flow, dag_model: Any, last: dict[str, Any] | None, *, can_edit: bool = False
) -> dict[str, Any]:
    """One line of the flows page (and of ``GET /api/flows``): nothing secret, conn ids only."""
    settings = flow.settings
    return {
        "dag_id": flow.dag_id,
        "task_id": flow.task_id,
        "flow_id": flow.flow_id,
        "style": flow.style,
        "active": bool(dag_model is not None and not dag_model.is_paused),
        "schedule": schedule_text(flow, dag_model),
        "schedule_description": getattr(dag_model, "timetable_description", None),
        "can_edit": can_edit,
        "editable_spec": editable_spec(flow, getattr(dag_model, "fileloc", None)),
        "files_from": settings.get("files_from"),
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
    editable = readable_dag_ids(user, "PUT")
    rows = []
    for flow in flows:
        runs = recent_runs(session, flow, limit=1)
        last = runs[0] if runs else None
        rows.append(flow_row(flow, models.get(flow.dag_id), last, can_edit=flow.dag_id in editable))
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


def flow_detail(session: Session, flow: Flow, *, can_edit: bool = False) -> dict[str, Any]:
    """One flow's page: its row, settings, processor code, recent runs and ledger."""
    dag_model = dag_models(session, {flow.dag_id}).get(flow.dag_id)
    runs = recent_runs(session, flow)
    row = flow_row(flow, dag_model, runs[0] if runs else None, can_edit=can_edit)
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
