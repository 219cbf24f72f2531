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
    GET  /api/functions                         library, with the flows using each   DAG read
    GET  /api/functions/{name}                  one function's versions (code)       DAG read
    POST /api/flows/{dag_id}/{task_id}/test     run Test                       DAG edit
    POST /api/flows/{dag_id}/{task_id}/environment  build/check the environment DAG edit
    POST /api/flows/{dag_id}/{task_id}/functions    save as reusable function  DAG edit
    POST /api/flows/{dag_id}/{task_id}/replay   replay quarantined files       DAG edit
                                                (``{"path": ...}`` or ``{"paths": [...]}``, literal names)
    GET  /api/tests/{test_id}                   a Test's place in the queue, or its result     DAG edit
    POST /api/tests/{test_id}/cancel            cancel a Test (kills its sandboxed child)      DAG edit
                                                (edit on the Test's own flow, checked by the route)

A Test answers at once when it is done within :data:`TEST_ANSWER_SECONDS`; else with
``state: queued`` (and its ``position``) or ``state: running`` and a ``test_id`` the page asks
again with ``GET /api/tests/{test_id}`` (which waits up to that long for the end).

The routes are grouped by kind in four routers (``pages``, ``reads``, ``actions``, ``tests``); what they
show comes from :mod:`~airflow_byo.plugins.page_data`, the ledger's side from
:mod:`~airflow_byo.plugins.ledger_view`.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from airflow.api_fastapi.common.db.common import SessionDep  # noqa: TC002 (FastAPI reads it at runtime)
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from airflow_byo.exceptions import ByoError
from airflow_byo.plugins import render
from airflow_byo.plugins.ledger_view import new_files_count, replay
from airflow_byo.plugins.page_data import find_flows, flow_detail, flow_rows, library_index

if TYPE_CHECKING:
    from airflow_byo.plugins.flows import Flow

__all__ = ["create_app"]

_STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {
    "byo.js": "text/javascript",
    "byo.css": "text/css",
    "editor.js": "text/javascript",
    "editor-form.js": "text/javascript",
    "editor-actions.js": "text/javascript",
    "editor.css": "text/css",
}

ReadDag = Depends(requires_access_dag("GET"))
EditDag = Depends(requires_access_dag("PUT"))
#: How long a Test request (and a poll of it) waits for the Test's end before answering its state.
TEST_ANSWER_SECONDS = 2.0


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


def flow_or_404(session: Any, dag_id: str, task_id: str) -> Flow:
    """The BYO flow ``task_id`` of DAG ``dag_id``, or an HTTP 404 naming it."""
    for flow in find_flows(session, {dag_id}):
        if flow.task_id == task_id:
            return flow
    raise HTTPException(404, f"no BYO flow {dag_id}/{task_id}")


def html_page(request: Request, template: str, **context: Any) -> HTMLResponse:
    """A page of the plugin: rendered with a fresh CSP nonce, never cached (the editor's pages too)."""
    nonce = secrets.token_urlsafe(16)
    base = str(request.scope.get("root_path", ""))
    # Airflow's own REST API, on the same origin (the page's Activate/Pause call it)
    airflow_api = base.removesuffix("/byo") + "/api/v2"
    html = render.page(template, nonce=nonce, base=base, airflow_api=airflow_api, **context)
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


# -- pages ------------------------------------------------------------------------------------------
pages = APIRouter()


@pages.get("/", response_class=HTMLResponse, dependencies=[ReadDag])
def flows_page(request: Request, session: SessionDep, user: GetUserDep) -> HTMLResponse:
    return html_page(request, "flows.html", flows=flow_rows(session, user), user=user.get_name())


@pages.get("/flows/{dag_id}/{task_id}", response_class=HTMLResponse, dependencies=[ReadDag])
def flow_page(
    request: Request, dag_id: str, task_id: str, session: SessionDep, user: GetUserDep
) -> HTMLResponse:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    flow = flow_or_404(session, dag_id, task_id)
    can_edit = get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=dag_id), user=user)
    detail = flow_detail(session, flow, can_edit=can_edit)
    return html_page(request, "flow.html", flow=detail, can_edit=can_edit, user=user.get_name())


@pages.get("/library", response_class=HTMLResponse, dependencies=[ReadDag])
def library_page(request: Request, session: SessionDep, user: GetUserDep) -> HTMLResponse:
    return html_page(request, "library.html", functions=library_index(session, user), user=user.get_name())


@pages.get("/static/{name}")
def static(name: str, user: GetUserDep) -> Response:
    if name not in _STATIC_TYPES:
        raise HTTPException(404, "no such file")
    return Response((_STATIC / name).read_bytes(), media_type=_STATIC_TYPES[name])


# -- reads ------------------------------------------------------------------------------------------
reads = APIRouter(prefix="/api")


@reads.get("/flows", dependencies=[ReadDag])
def api_flows(session: SessionDep, user: GetUserDep) -> list[dict[str, Any]]:
    return flow_rows(session, user)


@reads.get("/flows/{dag_id}/{task_id}", dependencies=[ReadDag])
def api_flow(dag_id: str, task_id: str, session: SessionDep) -> dict[str, Any]:
    return flow_detail(session, flow_or_404(session, dag_id, task_id))


@reads.get("/flows/{dag_id}/{task_id}/files", dependencies=[ReadDag])
async def api_files(dag_id: str, task_id: str, session: SessionDep) -> dict[str, Any]:
    from airflow_byo.plugins.sample_files import source_listing

    flow = flow_or_404(session, dag_id, task_id)
    try:
        files = await run_in_threadpool(source_listing, flow)
    except ByoError as exc:
        return {"files": [], "new": None, "error": str(exc)}
    return {"files": files, "new": await run_in_threadpool(new_files_count, flow, files), "error": None}


@reads.get("/functions", dependencies=[ReadDag])
def api_functions(session: SessionDep, user: GetUserDep) -> list[dict[str, Any]]:
    return library_index(session, user)


@reads.get("/functions/{name}", dependencies=[ReadDag])
def api_function(name: str) -> dict[str, Any]:
    from airflow_byo import library

    versions = library.list_functions().get(name)
    if not versions:
        raise HTTPException(404, f"no library function {name!r}")
    return {"name": name, "versions": [dataclasses.asdict(library.get(f"{name}@{v}")) for v in versions]}


# -- actions (DAG edit on the flow's DAG, JSON bodies only) ---------------------------------------
actions = APIRouter(prefix="/api/flows/{dag_id}/{task_id}")


@actions.post("/test", dependencies=[EditDag])
async def api_test(
    dag_id: str, task_id: str, body: JsonBody, session: SessionDep, user: GetUserDep
) -> dict[str, Any]:
    from airflow_byo.plugins.testing import TestRequest, run_test

    flow = flow_or_404(session, dag_id, task_id)
    request = TestRequest(
        code=_text(body, "code"),
        function_name=str(body.get("function_name") or "process"),
        test_file=_text(body, "test_file"),
        packages=body.get("packages") if body.get("packages") not in ("", None) else None,
        runtime_config=_runtime_config(body.get("runtime_config")),
    )
    return await run_in_threadpool(
        lambda: run_test(flow, request, user=user.get_name(), wait=TEST_ANSWER_SECONDS)
    )


@actions.post("/environment", dependencies=[EditDag])
async def api_environment(dag_id: str, task_id: str, body: JsonBody, session: SessionDep) -> dict[str, Any]:
    from airflow_byo.packages import parse_packages
    from airflow_byo.plugins.testing import environment_state

    flow_or_404(session, dag_id, task_id)
    requirements = parse_packages(body.get("packages") or None)
    state = await run_in_threadpool(environment_state, requirements)
    state.pop("python", None)
    return state


@actions.post("/functions", dependencies=[EditDag], status_code=201)
async def api_save_function(
    dag_id: str, task_id: str, body: JsonBody, session: SessionDep, user: GetUserDep
) -> dict[str, Any]:
    from airflow_byo import library

    flow_or_404(session, dag_id, task_id)
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
    message = f"unchanged, still {entry.ref}" if entry.unchanged else f"saved {entry.ref}"
    return {
        "ref": entry.ref,
        "name": entry.name,
        "version": entry.version,
        "unchanged": entry.unchanged,
        "message": message,
    }


@actions.post("/replay", dependencies=[EditDag])
async def api_replay(dag_id: str, task_id: str, body: JsonBody, session: SessionDep) -> dict[str, Any]:
    flow = flow_or_404(session, dag_id, task_id)
    count = await run_in_threadpool(replay, flow, _replay_paths(body))
    return {"replayed": count}


# -- a Test in the queue (DAG edit on the Test's flow) ---------------------------------------------
tests = APIRouter(prefix="/api/tests/{test_id}")


def _test_job(test_id: str, user: Any) -> Any:
    """The Test ``test_id``, if ``user`` may edit its flow's DAG."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    from airflow_byo.plugins.trial_queue import QUEUE

    job = QUEUE.get(test_id)
    if job is None:
        raise HTTPException(404, f"no Test {test_id} on this api-server (a finished Test is kept 10 minutes)")
    if not get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=job.dag_id), user=user):
        raise HTTPException(403, f"this Test is of {job.dag_id}, which you may not edit")
    return job


@tests.get("", dependencies=[EditDag])
async def api_test_state(test_id: str, user: GetUserDep) -> dict[str, Any]:
    from airflow_byo.plugins.trial_queue import QUEUE

    job = _test_job(test_id, user)
    return await run_in_threadpool(QUEUE.answer, job, TEST_ANSWER_SECONDS)


@tests.post("/cancel", dependencies=[EditDag])
async def api_test_cancel(test_id: str, body: JsonBody, user: GetUserDep) -> dict[str, Any]:
    from airflow_byo.plugins.trial_queue import QUEUE

    job = _test_job(test_id, user)
    return await run_in_threadpool(QUEUE.cancel, job, user.get_name())


def create_app() -> FastAPI:
    """The app: HTML pages, their JSON API, and the two static files."""
    app = FastAPI(title="BYO Flows", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ByoError)
    async def _byo_error(request: Request, exc: ByoError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    for router in (pages, reads, actions, tests):
        app.include_router(router)
    from airflow_byo.plugins.editor import pages as editor_pages
    from airflow_byo.plugins.editor import routes as editor_routes

    app.include_router(editor_pages.router)
    app.include_router(editor_routes.editor)
    app.include_router(editor_routes.specs)
    return app


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise HTTPException(422, f"{name}: required (a non-empty string)")
    return value


def _replay_paths(body: dict[str, Any]) -> list[str]:
    """The quarantined files a Replay names, exactly: ``{"path": ...}`` or ``{"paths": [...]}``."""
    if "pattern" in body:
        raise HTTPException(
            422,
            "pattern: Replay names files literally; send path (or paths), relative to the source "
            "(for a glob use `airflow byo ledger replay <flow_id> --pattern`)",
        )
    if "paths" not in body:
        return [_text(body, "path")]
    paths = body["paths"]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p.strip() for p in paths):
        raise HTTPException(422, "paths: required (a non-empty list of file paths, relative to the source)")
    return paths


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
