"""
Who may do what in the flow editor, with the simple auth manager's real decisions and JWTs:
anonymous 401 everywhere, a viewer reads but never writes, user/op/admin write, ``[byo]
flow_editors`` narrows creating by name or role, and every route keeps its declared DAG permission.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from fastapi.routing import APIRoute

from airflow_byo.plugins.editor import routes
from airflow_byo.plugins.editor.rights import roles_of
from tests.plugins.editor.conftest import Editor

#: Each editor route and the DAG permission its ``requires_access_dag`` declares (None: checked in
#: the route: the create right, or edit of the spec's own flow).
ROUTES = {
    ("GET", "/api/editor/options"): "GET",
    ("POST", "/api/editor/browse"): None,
    ("POST", "/api/editor/match"): None,
    ("POST", "/api/editor/schedule"): "GET",
    ("POST", "/api/editor/validate"): "GET",
    ("POST", "/api/editor/test"): None,
    ("POST", "/api/specs"): "PUT",
    ("GET", "/api/specs/{dag_id}"): "GET",
    ("PUT", "/api/specs/{dag_id}"): "PUT",
    ("DELETE", "/api/specs/{dag_id}"): "PUT",
    ("GET", "/api/specs/{dag_id}/history/{version}"): "PUT",
    ("POST", "/api/specs/{dag_id}/revert"): "PUT",
}


def _permission(route: APIRoute) -> str | None:
    methods = [
        inspect.getclosurevars(d.dependency).nonlocals.get("method")
        for d in route.dependencies
        if d.dependency is not None and d.dependency.__qualname__.startswith("requires_access_dag")
    ]
    return methods[0] if methods else None


def test_every_route_keeps_its_dag_permission_and_needs_a_user() -> None:
    from airflow.api_fastapi.core_api.security import get_user

    found = {
        (method, route.path): _permission(route)
        for router in (routes.editor, routes.specs)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert found == ROUTES
    for router in (routes.editor, routes.specs):
        for route in router.routes:
            assert isinstance(route, APIRoute)
            calls = {d.call for d in route.dependant.dependencies} | {
                dd.call for d in route.dependant.dependencies for dd in d.dependencies
            }
            assert get_user in calls, route.path


def _calls(editor: Editor, hash_: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    spec = editor.spec("orders", description="changed")
    return [
        ("POST", "/api/specs", {"spec": editor.spec("other")}),
        ("PUT", "/api/specs/orders", {"spec": spec, "hash": hash_}),
        ("POST", "/api/specs/orders/revert", {"version": 1, "hash": hash_}),
        ("GET", "/api/specs/orders/history/1", None),
        ("DELETE", "/api/specs/orders", {"hash": hash_}),
        ("POST", "/api/editor/browse", {"type": "local", "path": str(editor.data)}),
        ("POST", "/api/editor/match", {"source": spec["source"]}),
        ("POST", "/api/editor/test", {"spec": spec, "test_file": "a.csv"}),
    ]


READS = [
    ("GET", "/api/editor/options", None),
    ("POST", "/api/editor/schedule", {"schedule": "hourly"}),
    ("POST", "/api/editor/validate", {"spec": {"name": "x"}}),
    ("GET", "/api/specs/orders", None),
]


def test_anonymous_gets_401_everywhere(editor: Editor) -> None:
    created = editor.create("orders")
    for method, path, body in [*_calls(editor, created["hash"]), *READS]:
        answer = editor.request(method, path, user=None, json=body)
        assert answer.status_code == 401, (method, path, answer.text)


def test_a_viewer_reads_and_never_writes(editor: Editor) -> None:
    created = editor.create("orders")
    for method, path, body in _calls(editor, created["hash"]):
        answer = editor.request(method, path, user="viewer", json=body)
        assert answer.status_code == 403, (method, path, answer.text)
    for method, path, body in READS:
        answer = editor.request(method, path, user="viewer", json=body)
        assert answer.status_code == 200, (method, path, answer.text)
    assert (editor.folder / "orders.yaml").read_bytes()  # untouched
    assert not (editor.folder / "other.yaml").exists()


@pytest.mark.parametrize("user", ["user", "op", "admin"])
def test_users_who_may_edit_dags_create_and_edit(editor: Editor, user: str) -> None:
    created = editor.create("orders", user=user)
    saved = editor.save("orders", created["hash"], user=user, description="x")
    assert saved.status_code == 200, saved.text


def test_flow_editors_narrow_who_creates(editor: Editor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__FLOW_EDITORS", "op, role:ADMIN")
    refused = editor.request("POST", "/api/specs", user="user", json={"spec": editor.spec("by_user")})
    assert refused.status_code == 403
    assert "[byo] flow_editors" in refused.json()["detail"]
    assert editor.request("GET", "/api/editor/options", user="user").json()["can_create"] is False
    assert editor.request("GET", "/api/editor/options", user="admin").json()["can_create"] is True
    editor.create("by_op", user="op")  # listed by name
    editor.create("by_admin", user="admin")  # listed by role
    # editing stays a matter of the DAG's own edit right
    view = editor.request("GET", "/api/specs/by_op", user="user").json()
    saved = editor.save("by_op", view["hash"], user="user", description="x")
    assert saved.status_code == 200, saved.text


class _FabRole:
    def __init__(self, name: str) -> None:
        self.name = name


class _FabUser:
    roles = [_FabRole("Op"), _FabRole("data-engineers")]


class _RolesGetter:
    def get_roles(self) -> list[str]:
        return ["Analysts"]


class _NoRoles:
    pass


def test_roles_are_read_from_the_simple_and_fab_users_and_get_roles() -> None:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    assert roles_of(SimpleAuthManagerUser(username="a", role="OP")) == {"op"}
    assert roles_of(_FabUser()) == {"op", "data-engineers"}
    assert roles_of(_RolesGetter()) == {"analysts"}
    assert roles_of(_NoRoles()) == set()
