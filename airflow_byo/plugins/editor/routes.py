"""
The flow editor's JSON API (docs/flow-editor.md), in two routers included by the page's app:

    GET    /api/editor/options                 form choices, folder state     DAG read
    POST   /api/editor/browse                  one folder via a connection    create (or edit the named flow)
    POST   /api/editor/match                   "N of M files match"           create (or edit the named flow)
    POST   /api/editor/schedule                Airflow schedule, next runs    DAG read
    POST   /api/editor/validate                the checks of a save           DAG read
    POST   /api/editor/test                    Test the unsaved spec          create (or edit the spec's flow)
    POST   /api/specs                          create a flow (paused)         create: DAG edit, flow_editors
    GET    /api/specs/{name}                   spec, YAML, hash, history      DAG read of that flow
    PUT    /api/specs/{name}                   save (409 on a stale hash)     DAG edit of that flow
    DELETE /api/specs/{name}                   delete (history stays)         DAG edit of that flow
    GET    /api/specs/{name}/history/{n}       a version and its diff         DAG edit of that flow
    POST   /api/specs/{name}/revert            a new save of version n        DAG edit of that flow

The path parameter is called ``dag_id`` in the code, so that Airflow's own
``requires_access_dag`` checks the flow's DAG (a spec's name is its DAG id). Bodies are JSON only.
Errors: 422 ``{detail, errors: [{field, message, line}]}``, 409 ``{detail, current_hash}`` or
``{detail, spec_folder}``, 403/404 ``{detail}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.api_fastapi.common.db.common import SessionDep  # noqa: TC002 (FastAPI reads it at runtime)
from airflow.api_fastapi.core_api.security import GetUserDep  # noqa: TC002
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from airflow_byo.plugins.app import TEST_ANSWER_SECONDS, EditDag, JsonBody, ReadDag
from airflow_byo.plugins.editor import listing, rights, saving, spec_views, unsaved
from airflow_byo.plugins.editor.options import FieldProblem, editor_options, schedule_preview
from airflow_byo.plugins.editor.saving import FolderUnavailable, SpecInvalid
from airflow_byo.plugins.editor.spec_store import SpecConflict

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["editor", "specs"]


def _invalid(errors: list[Any]) -> JSONResponse:
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return JSONResponse({"detail": detail, "errors": [e.as_dict() for e in errors]}, status_code=422)


class EditorRoute(APIRoute):
    """Turns the editor's errors into their answers (422, 409) for every route of its routers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (SpecInvalid, FieldProblem) as exc:
                return _invalid(exc.errors)
            except SpecConflict as exc:
                return JSONResponse({"detail": exc.detail, "current_hash": exc.current_hash}, status_code=409)
            except FolderUnavailable as exc:
                return JSONResponse(
                    {"detail": exc.state.message, "spec_folder": exc.state.as_dict()}, status_code=409
                )

        return handle


editor = APIRouter(prefix="/api/editor", route_class=EditorRoute)
specs = APIRouter(prefix="/api/specs", route_class=EditorRoute)


# -- the form ---------------------------------------------------------------------------------------
@editor.get("/options", dependencies=[ReadDag])
def api_options(session: SessionDep, user: GetUserDep) -> dict[str, Any]:
    return editor_options(session, user)


def _name(body: dict[str, Any]) -> str | None:
    name = body.get("name")
    return name if isinstance(name, str) and name else None


@editor.post("/browse")
def api_browse(body: JsonBody, session: SessionDep, user: GetUserDep) -> dict[str, Any]:
    rights.require_spec_write(session, user, _name(body))
    return listing.browse(body)


@editor.post("/match")
def api_match(body: JsonBody, session: SessionDep, user: GetUserDep) -> dict[str, Any]:
    rights.require_spec_write(session, user, _name(body))
    return listing.match(body)


@editor.post("/schedule", dependencies=[ReadDag])
def api_schedule(body: JsonBody) -> dict[str, Any]:
    return schedule_preview(body.get("schedule"))


@editor.post("/validate", dependencies=[ReadDag])
def api_validate(body: JsonBody) -> dict[str, Any]:
    return unsaved.validate(saving.spec_of(body))


@editor.post("/test")
def api_test(body: JsonBody, session: SessionDep, user: GetUserDep) -> Any:
    spec = saving.spec_of(body)
    rights.require_spec_write(session, user, _name(spec))
    test_file = body.get("test_file")
    if not isinstance(test_file, str) or not test_file.strip():
        raise FieldProblem(
            "test_file", "required: the path of one file of the source (pick one, or type its name)"
        )
    result, errors = unsaved.run_unsaved_test(spec, test_file, user.get_name(), TEST_ANSWER_SECONDS)
    return _invalid(errors) if errors else result


# -- the specs ----------------------------------------------------------------------------------------
@specs.post("", status_code=201, dependencies=[EditDag])
def api_create(body: JsonBody, session: SessionDep, user: GetUserDep) -> dict[str, Any]:
    rights.require_create(user)
    return saving.create(session, user, body)


@specs.get("/{dag_id}", dependencies=[ReadDag])
def api_spec(dag_id: str, session: SessionDep, user: GetUserDep) -> dict[str, Any]:
    return spec_views.spec_view(session, user, saving.checked_name(dag_id))


@specs.put("/{dag_id}", dependencies=[EditDag])
def api_update(dag_id: str, body: JsonBody, session: SessionDep, user: GetUserDep) -> dict[str, Any]:
    return saving.update(session, user, dag_id, body)


@specs.delete("/{dag_id}", dependencies=[EditDag])
def api_delete(dag_id: str, body: JsonBody, session: SessionDep, user: GetUserDep) -> dict[str, Any]:
    return saving.delete(session, user, dag_id, body)


@specs.get("/{dag_id}/history/{version}", dependencies=[EditDag])
def api_version(dag_id: str, version: int) -> dict[str, Any]:
    return spec_views.version_view(saving.checked_name(dag_id), version)


@specs.post("/{dag_id}/revert", dependencies=[EditDag])
def api_revert(dag_id: str, body: JsonBody, session: SessionDep, user: GetUserDep) -> dict[str, Any]:
    return saving.revert(session, user, dag_id, body)
