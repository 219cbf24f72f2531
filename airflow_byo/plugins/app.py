"""
The BYO Flows page's FastAPI app, mounted by the api-server at ``/byo``.

Airflow gives a plugin's app no authentication, so every route declares it: a user from the
JWT (``Authorization: Bearer`` or the UI's ``_token`` cookie) and the auth manager's DAG
permission -- read for pages and reads, edit (``PUT``) on the flow's own DAG for Test, Save and
Replay. POST routes take JSON bodies only (``Content-Type: application/json``), which a foreign
page cannot send with the user's cookie without a CORS preflight (that Airflow never grants).

Routes (under ``/byo``)::

    GET  /                                      flows page                     DAG read (listing filtered)
    GET  /flows/{dag_id}/{task_id}              flow page + test panel         DAG read
    GET  /library                               function library page          DAG read
    GET  /static/{name}                         the page's JS/CSS              authenticated
    GET  /api/flows                             flows (JSON)                   DAG read (filtered)
    GET  /api/flows/{dag_id}/{task_id}          flow, code, runs, ledger       DAG read
    GET  /api/flows/{dag_id}/{task_id}/files    source listing                 DAG read
    GET  /api/functions                         library, with the flows using each
    GET  /api/functions/{name}                  one function's versions (code)
    POST /api/flows/{dag_id}/{task_id}/test     run Test                       DAG edit
    POST /api/flows/{dag_id}/{task_id}/environment  build/check the environment DAG edit
    POST /api/flows/{dag_id}/{task_id}/functions    save as reusable function  DAG edit
    POST /api/flows/{dag_id}/{task_id}/replay   replay quarantined files       DAG edit
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.common.db.common import SessionDep  # noqa: TC002 (FastAPI reads it at runtime)
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from airflow_byo.exceptions import ByoError
from airflow_byo.plugins import render
from airflow_byo.plugins.flows import Flow, find_flows, processor_code
from airflow_byo.plugins.insights import ledger_status, new_files_count, recent_runs, redact_url, replay

__all__ = ["create_app"]

_STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {"byo.js": "text/javascript", "byo.css": "text/css"}

ReadDag = Depends(requires_access_dag("GET"))
EditDag = Depends(requires_access_dag("PUT"))


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; anything else (a form post) is refused."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, "send a JSON body (Content-Type: application/json)")
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body


JsonBody = Annotated[dict[str, Any], Depends(json_body)]


def _readable_dag_ids(user: Any) -> set[str]:
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def _flow(session: Any, dag_id: str, task_id: str) -> Flow:
    for flow in find_flows(session, {dag_id}):
        if flow.task_id == task_id:
            return flow
    raise HTTPException(404, f"no BYO flow {dag_id}/{task_id}")


def _dag_models(session: Any, dag_ids: set[str]) -> dict[str, Any]:
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
        "description": flow.dag.get("description"),
        "tags": flow.dag.get("tags") or [],
        "last_run": last,
        "dag_url": f"/dags/{flow.dag_id}",
    }


def _flows(session: Any, user: Any) -> list[dict[str, Any]]:
    flows = find_flows(session, _readable_dag_ids(user))
    models = _dag_models(session, {f.dag_id for f in flows})
    rows = []
    for flow in flows:
        runs = recent_runs(session, flow, limit=1)
        rows.append(flow_row(flow, models.get(flow.dag_id), runs[0] if runs else None))
    return rows


def _code(session: Any, flow: Flow, dag_model: Any) -> dict[str, Any]:
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


def _detail(session: Any, flow: Flow) -> dict[str, Any]:
    models = _dag_models(session, {flow.dag_id})
    dag_model = models.get(flow.dag_id)
    runs = recent_runs(session, flow)
    row = flow_row(flow, dag_model, runs[0] if runs else None)
    return row | {
        "settings": {k: redact_url(v) for k, v in flow.settings.items()},
        "processor": _code(session, flow, dag_model),
        "runs": runs,
        "ledger": ledger_status(flow),
    }


def _library_index(session: Any, user: Any) -> list[dict[str, Any]]:
    """Every library function with its versions, and which (readable) flows use which version."""
    from airflow_byo import library

    functions = library.list_functions()
    used: dict[str, list[dict[str, str]]] = {}
    for flow in find_flows(session, _readable_dag_ids(user)):
        if not flow.spec_file:
            continue
        ref = _spec_function(flow, session)
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


def _spec_function(flow: Flow, session: Any) -> str | None:
    code = processor_code(
        flow, getattr(_dag_models(session, {flow.dag_id}).get(flow.dag_id), "fileloc", None), None
    )
    marker = "(library function "
    return code.origin.split(marker, 1)[1].rstrip(")") if marker in code.origin else None


def _page(request: Request, template: str, **context: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = render.page(template, nonce=nonce, base=str(request.scope.get("root_path", "")), **context)
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": (
                f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
                "img-src 'self' data:; frame-ancestors 'self'; form-action 'none'; base-uri 'none'"
            ),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def create_app() -> FastAPI:
    """The app: HTML pages, their JSON API, and the two static files."""
    app = FastAPI(title="BYO Flows", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ByoError)
    async def _byo_error(request: Request, exc: ByoError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    # -- pages -------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, dependencies=[ReadDag])
    def flows_page(request: Request, session: SessionDep, user: GetUserDep) -> HTMLResponse:
        return _page(request, "flows.html", flows=_flows(session, user), user=user.get_name())

    @app.get("/flows/{dag_id}/{task_id}", response_class=HTMLResponse, dependencies=[ReadDag])
    def flow_page(
        request: Request, dag_id: str, task_id: str, session: SessionDep, user: GetUserDep
    ) -> HTMLResponse:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

        flow = _flow(session, dag_id, task_id)
        can_edit = get_auth_manager().is_authorized_dag(
            method="PUT", details=DagDetails(id=dag_id), user=user
        )
        detail = _detail(session, flow)
        return _page(request, "flow.html", flow=detail, can_edit=can_edit, user=user.get_name())

    @app.get("/library", response_class=HTMLResponse, dependencies=[ReadDag])
    def library_page(request: Request, session: SessionDep, user: GetUserDep) -> HTMLResponse:
        return _page(request, "library.html", functions=_library_index(session, user), user=user.get_name())

    @app.get("/static/{name}")
    def static(name: str, user: GetUserDep) -> Response:
        if name not in _STATIC_TYPES:
            raise HTTPException(404, "no such file")
        return Response((_STATIC / name).read_bytes(), media_type=_STATIC_TYPES[name])

    # -- reads ---------------------------------------------------------------------------------
    @app.get("/api/flows", dependencies=[ReadDag])
    def api_flows(session: SessionDep, user: GetUserDep) -> list[dict[str, Any]]:
        return _flows(session, user)

    @app.get("/api/flows/{dag_id}/{task_id}", dependencies=[ReadDag])
    def api_flow(dag_id: str, task_id: str, session: SessionDep) -> dict[str, Any]:
        return _detail(session, _flow(session, dag_id, task_id))

    @app.get("/api/flows/{dag_id}/{task_id}/files", dependencies=[ReadDag])
    async def api_files(dag_id: str, task_id: str, session: SessionDep) -> dict[str, Any]:
        from airflow_byo.plugins.testing import source_listing

        flow = _flow(session, dag_id, task_id)
        try:
            files = await run_in_threadpool(source_listing, flow)
        except ByoError as exc:
            return {"files": [], "new": None, "error": str(exc)}
        return {"files": files, "new": await run_in_threadpool(new_files_count, flow, files), "error": None}

    @app.get("/api/functions", dependencies=[ReadDag])
    def api_functions(session: SessionDep, user: GetUserDep) -> list[dict[str, Any]]:
        return _library_index(session, user)

    @app.get("/api/functions/{name}", dependencies=[ReadDag])
    def api_function(name: str) -> dict[str, Any]:
        from airflow_byo import library

        versions = library.list_functions().get(name)
        if not versions:
            raise HTTPException(404, f"no library function {name!r}")
        return {"name": name, "versions": [dataclasses.asdict(library.get(f"{name}@{v}")) for v in versions]}

    # -- actions (DAG edit on the flow's DAG, JSON bodies only) --------------------------------
    @app.post("/api/flows/{dag_id}/{task_id}/test", dependencies=[EditDag])
    async def api_test(dag_id: str, task_id: str, body: JsonBody, session: SessionDep) -> dict[str, Any]:
        from airflow_byo.plugins.testing import TestRequest, run_test

        flow = _flow(session, dag_id, task_id)
        request = TestRequest(
            code=_text(body, "code"),
            function_name=str(body.get("function_name") or "process"),
            test_file=_text(body, "test_file"),
            packages=body.get("packages") if body.get("packages") not in ("", None) else None,
            runtime_config=_runtime_config(body.get("runtime_config")),
        )
        return await run_in_threadpool(run_test, flow, request)

    @app.post("/api/flows/{dag_id}/{task_id}/environment", dependencies=[EditDag])
    async def api_environment(
        dag_id: str, task_id: str, body: JsonBody, session: SessionDep
    ) -> dict[str, Any]:
        from airflow_byo.packages import parse_packages
        from airflow_byo.plugins.testing import environment_state

        _flow(session, dag_id, task_id)
        requirements = parse_packages(body.get("packages") or None)
        state = await run_in_threadpool(environment_state, requirements)
        state.pop("python", None)
        return state

    @app.post("/api/flows/{dag_id}/{task_id}/functions", dependencies=[EditDag], status_code=201)
    async def api_save_function(
        dag_id: str, task_id: str, body: JsonBody, session: SessionDep, user: GetUserDep
    ) -> dict[str, Any]:
        from airflow_byo import library

        _flow(session, dag_id, task_id)
        description = str(body.get("description") or f"saved from {dag_id}/{task_id} by {user.get_name()}")
        entry = await run_in_threadpool(
            lambda: library.save(
                _text(body, "name"),
                _text(body, "code"),
                function_name=str(body.get("function_name") or "process"),
                packages=body.get("packages") or None,
                description=description,
            )
        )
        return {"ref": entry.ref, "name": entry.name, "version": entry.version}

    @app.post("/api/flows/{dag_id}/{task_id}/replay", dependencies=[EditDag])
    async def api_replay(dag_id: str, task_id: str, body: JsonBody, session: SessionDep) -> dict[str, Any]:
        flow = _flow(session, dag_id, task_id)
        pattern = _text(body, "pattern")
        count = await run_in_threadpool(replay, flow, pattern)
        return {"replayed": count}

    return app


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise HTTPException(422, f"{name}: required (a non-empty string)")
    return value


def _runtime_config(value: Any) -> Any:
    """The runtime variables JSON as typed (a JSON object or its text); empty means none."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise HTTPException(422, f"runtime_config: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise HTTPException(422, "runtime_config: must be a JSON object")
    return value
