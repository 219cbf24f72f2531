"""
The flow editor's HTML pages on the BYO Flows page (design: docs/flow-editor.md).

::

    GET /new                          New flow form                  DAG read (writing: create right)
    GET /new?copy=<dag_id>/<task_id>  an operator/decorator flow copied into a new spec    read on it
    GET /specs/{dag_id}/edit          the spec flow's form, prefilled  read on it (writing: edit on it)
    GET /specs/{dag_id}/history       its saved versions, diff, revert read on it (revert: edit on it)

The pages are shells: the form loads its options, the spec and its history from the JSON API
(:mod:`~airflow_byo.plugins.editor.routes`) and saves through it, so a page never holds a value
the API would not give the same user. Whoever may read gets the form read-only, with the reason.
Every value reaches the HTML autoescaped, or as JSON in a data block that no browser runs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airflow.api_fastapi.common.db.common import SessionDep  # noqa: TC002 (FastAPI reads it at runtime)
from airflow.api_fastapi.core_api.security import GetUserDep  # noqa: TC002 (FastAPI reads it at runtime)
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from airflow_byo.plugins.app import ReadDag, flow_or_404, html_page

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod

__all__ = ["router", "spec_of_flow"]

router = APIRouter()

_SCHEMES = {"s3": "s3", "s3a": "s3", "sftp": "sftp", "file": "local"}
_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://([^/]*)(/.*)?$", re.IGNORECASE)
#: The cron expressions Airflow summarizes its presets' timetables with.
_CRON_PRESETS = {"0 * * * *": "@hourly", "0 0 * * *": "@daily", "0 0 * * 0": "@weekly"}
_READ_ONLY_CREATE = (
    "You can read this form; creating a flow needs edit access to DAGs "
    "(and, where [byo] flow_editors is set, to be named there)."
)


def _authorized(user: Any, method: ResourceMethod, dag_id: str | None) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    details = DagDetails(id=dag_id) if dag_id else None
    return bool(get_auth_manager().is_authorized_dag(method=method, details=details, user=user))


def _can_create(user: Any) -> bool:
    """The create right of docs/flow-editor.md, as the API decides it."""
    from airflow_byo.plugins.editor import rights

    return bool(rights.can_create(user))


def _airflow_base(request: Request) -> str:
    """Airflow's own URL prefix: the plugin app is mounted at ``<prefix>/byo``."""
    return str(request.scope.get("root_path", "")).removesuffix("/byo")


def _editor(request: Request, user: Any, **context: Any) -> HTMLResponse:
    return html_page(
        request,
        "editor.html",
        user=user.get_name(),
        airflow_base=_airflow_base(request),
        **{"prefill": None, "copied_from": None, "name": "", **context},
    )


@router.get("/new", response_class=HTMLResponse, dependencies=[ReadDag])
def new_flow_page(
    request: Request, session: SessionDep, user: GetUserDep, copy: str | None = None
) -> HTMLResponse:
    can_write = _can_create(user)
    context: dict[str, Any] = {"title": "New flow", "mode": "new"}
    if copy:
        dag_id, _, task_id = copy.partition("/")
        if not dag_id or not task_id:
            raise HTTPException(422, "copy: give the flow to copy as <dag_id>/<task_id>")
        if not _authorized(user, "GET", dag_id):
            raise HTTPException(403, f"copy: you may not read the DAG {dag_id!r}")
        prefill = spec_of_flow(session, flow_or_404(session, dag_id, task_id))
        context |= {"prefill": prefill, "copied_from": copy}
        context["title"] = "New flow, copied"
    return _editor(
        request, user, can_write=can_write, can_test=can_write, read_only_reason=_READ_ONLY_CREATE, **context
    )


@router.get("/specs/{dag_id}/edit", response_class=HTMLResponse, dependencies=[ReadDag])
def edit_flow_page(request: Request, dag_id: str, user: GetUserDep) -> HTMLResponse:
    can_write = _authorized(user, "PUT", dag_id)
    reason = f"You can read this flow; changing it needs edit access to the DAG {dag_id}."
    return _editor(
        request,
        user,
        title=f"Edit {dag_id}",
        mode="edit",
        name=dag_id,
        can_write=can_write,
        can_test=can_write,
        read_only_reason=reason,
    )


@router.get("/specs/{dag_id}/history", response_class=HTMLResponse, dependencies=[ReadDag])
def history_page(request: Request, dag_id: str, user: GetUserDep) -> HTMLResponse:
    return html_page(
        request,
        "history.html",
        user=user.get_name(),
        name=dag_id,
        can_write=_authorized(user, "PUT", dag_id),
    )


# -- an operator or decorator flow as a new spec ----------------------------------------------------


def _location(url: Any) -> dict[str, Any]:
    """A flow's source/destination URL as a spec's ``{type, path}`` (its host is the connection's)."""
    text = str(url or "")
    match = _URL.match(text)
    if not match:
        return {"type": "local", "path": text}
    scheme, host, path = match.group(1).lower(), match.group(2), match.group(3) or ""
    kind = _SCHEMES.get(scheme)
    if kind == "s3":
        return {"type": "s3", "path": f"{host}{path}".rstrip("/") or host}
    if kind in ("sftp", "local"):
        return {"type": kind, "path": path or "/"}
    return {"type": "local", "path": text}  # another fsspec scheme: validation says what to do


def _schedule(summary: Any) -> str:
    """A DAG's schedule as a spec's frequency: a preset or cron expression, else ``manual``."""
    from airflow_byo.specs.model import FREQUENCIES, ON_NEW_FILES

    text = str(summary or "").strip()
    if text == ON_NEW_FILES:
        return text
    text = _CRON_PRESETS.get(text, text)
    for name, airflow_schedule in FREQUENCIES.items():
        if airflow_schedule and text == airflow_schedule:
            return name
    from croniter import croniter

    return text if text and croniter.is_valid(text) else "manual"


def _processing(processor: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    processing: dict[str, Any] = {
        "packages": processor.get("packages") or settings.get("packages") or None,
        "runtime": settings.get("runtime") or None,
        "runtime_config": processor.get("runtime_config") or settings.get("runtime_config") or {},
    }
    if processor.get("reference"):
        processing["reference"] = processor["reference"]
    else:
        processing["code"] = processor.get("code") or ""
        processing["function_name"] = processor.get("function_name") or "process"
    return {k: v for k, v in processing.items() if v not in (None, "")} | {
        "runtime_config": processing["runtime_config"]
    }


def spec_of_flow(session: Any, flow: Any) -> dict[str, Any]:
    """
    A new spec with ``flow``'s settings: source, filters, destination, processor code (as the flow
    page reads it, never by running the DAG file), packages, runtime and runtime config.
    """
    from airflow_byo.plugins.page_data import flow_detail

    detail = flow_detail(session, flow)
    settings = flow.settings
    source = _location(settings.get("source")) | {
        "conn_id": settings.get("source_conn_id") or None,
        "include": settings.get("include") or ["*"],
        "exclude": settings.get("exclude") or [],
        "modified_after": settings.get("modified_after") or None,
    }
    destination = _location(settings.get("destination")) | {
        "conn_id": settings.get("destination_conn_id") or None
    }
    description = f"A copy of {flow.dag_id}/{flow.task_id}" + (
        f": {detail['description']}" if detail.get("description") else ""
    )
    return {
        "name": f"{flow.dag_id}_{flow.task_id}"[:200],
        "description": description,
        "source": {k: v for k, v in source.items() if v is not None},
        "destination": {k: v for k, v in destination.items() if v is not None},
        "schedule": _schedule(detail.get("schedule")),
        "processing": _processing(detail.get("processor") or {}, settings),
        "problem": (detail.get("processor") or {}).get("problem"),
    }
