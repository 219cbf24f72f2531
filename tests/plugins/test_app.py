"""
The page's app in process (FastAPI's test client): every route's auth dependency, and the ledger
parts of a flow's page -- counts, failed/quarantined files, new files, Replay -- on the flow's
own ledger (its ``flow_id`` and ``ledger_conn_id`` as serialized), never another one.

Airflow's auth and metadata database are replaced here (the browser test,
``tests/e2e/test_ui_plugin.py``, runs the real ones); the ledgers are real SQLite databases.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from airflow_byo.ledger.state import Ledger
from airflow_byo.plugins import app as page_app
from airflow_byo.plugins import page_data
from airflow_byo.plugins.flows import Flow
from tests.ledger.conftest import files
from tests.plugins.test_flows import serialized_flows

#: Each route and the DAG permission it needs (None: any authenticated user).
ROUTES = {
    ("GET", "/"): "GET",
    ("GET", "/flows/{dag_id}/{task_id}"): "GET",
    ("GET", "/library"): "GET",
    ("GET", "/static/{name}"): None,
    ("GET", "/api/flows"): "GET",
    ("GET", "/api/flows/{dag_id}/{task_id}"): "GET",
    ("GET", "/api/flows/{dag_id}/{task_id}/files"): "GET",
    ("GET", "/api/functions"): "GET",
    ("GET", "/api/functions/{name}"): "GET",
    ("POST", "/api/flows/{dag_id}/{task_id}/test"): "PUT",
    ("POST", "/api/flows/{dag_id}/{task_id}/environment"): "PUT",
    ("POST", "/api/flows/{dag_id}/{task_id}/functions"): "PUT",
    ("POST", "/api/flows/{dag_id}/{task_id}/replay"): "PUT",
    ("GET", "/api/tests/{test_id}"): "PUT",  # and edit on the Test's own flow, checked inside
    ("POST", "/api/tests/{test_id}/cancel"): "PUT",
}
QUARANTINED = ("x[1].csv", "a*.csv", "ab.csv", "a1.csv")
LISTED = (*QUARANTINED, "bad.csv", "done.csv", "new1.csv", "new2.csv")


def _permission(route: APIRoute) -> str | None:
    """The method of the route's ``requires_access_dag`` dependency (None when it has none)."""
    methods = [
        inspect.getclosurevars(d.dependency).nonlocals.get("method")
        for d in route.dependencies
        if d.dependency is not None and d.dependency.__qualname__.startswith("requires_access_dag")
    ]
    assert len(methods) <= 1, route.path
    return methods[0] if methods else None


def test_every_route_keeps_its_dag_permission() -> None:
    from airflow.api_fastapi.core_api.security import get_user

    routes = [  # the flow editor's routes are tests/plugins/editor's
        r
        for r in page_app.create_app().routes
        if isinstance(r, APIRoute) and r.endpoint.__module__ == page_app.__name__
    ]
    found = {(method, r.path): _permission(r) for r in routes for method in r.methods}
    assert found == ROUTES
    # the static files need no DAG, but a user all the same
    static = next(r for r in routes if r.path == "/static/{name}")
    assert get_user in [d.call for d in static.dependant.dependencies]


class _User:
    def get_name(self) -> str:
        return "tester"


class _AuthManager:
    def is_authorized_dag(self, **_: Any) -> bool:
        return True


class Page:
    """The app on one flow, with both ledgers the flow could be confused with."""

    def __init__(self, client: TestClient, flow: Flow, own: Ledger, default: Ledger) -> None:
        self.client, self.flow, self.own, self.default = client, flow, own, default

    def path(self, tail: str = "") -> str:
        return f"/api/flows/{self.flow.dag_id}/{self.flow.task_id}{tail}"


def _client(monkeypatch: pytest.MonkeyPatch, flow: Flow) -> TestClient:
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep

    def find_flows(session: Any, dag_ids: set[str] | None = None) -> list[Flow]:
        return [flow] if dag_ids is None or flow.dag_id in dag_ids else []

    monkeypatch.setattr(page_app, "find_flows", find_flows)
    monkeypatch.setattr(page_data, "find_flows", find_flows)
    monkeypatch.setattr(page_data, "readable_dag_ids", lambda user: {flow.dag_id})
    monkeypatch.setattr(page_data, "dag_models", lambda session, dag_ids: {})
    monkeypatch.setattr(page_data, "recent_runs", lambda session, flow, limit=20: [])
    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", _AuthManager)
    app = page_app.create_app()
    for dependency in (page_app.ReadDag, page_app.EditDag):
        app.dependency_overrides[dependency.dependency] = lambda: None
    app.dependency_overrides[typing.get_args(GetUserDep)[1].dependency] = _User
    app.dependency_overrides[typing.get_args(SessionDep)[1].dependency] = lambda: None
    return TestClient(app)


def _fill(ledger: Ledger) -> None:
    """done.csv done, bad.csv failed, the QUARANTINED names quarantined."""
    listing = files("done.csv", "bad.csv", *QUARANTINED)
    ledger.claim(listing, "run-1", lease_seconds=60)
    ledger.done(listing[0], "run-1", ["done.out"])
    ledger.failed(listing[1], "run-1", "ValueError: no header")
    for file in listing[2:]:
        ledger.failed(file, "run-1", "KeyError: id", quarantined=True)


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connections: Any) -> Page:
    """A flow with its own flow_id and ledger connection; the default ledger holds other rows."""
    source = tmp_path / "in"
    source.mkdir()
    for name in LISTED:
        (source / name).write_text("id\n1\n")
    for name, conn_id in (("default.db", "byo_page_default"), ("other.db", "byo_page_other")):
        connections(conn_id, {"conn_type": "sqlite", "host": str(tmp_path / name)})
    monkeypatch.setenv("AIRFLOW__BYO__LEDGER_CONN_ID", "byo_page_default")
    flow = serialized_flows(str(source), t={"flow_id": "orders.custom", "ledger_conn_id": "byo_page_other"})[
        "t"
    ]
    own = Ledger.of("orders.custom", "byo_page_other")
    _fill(own)
    default = Ledger.of("orders.custom")  # the same flow id in the default ledger: never touched
    _fill(default)
    process = files(*LISTED)
    ledger = Ledger.of("ledgers.t")  # what the page read before issue 22: every file done
    ledger.claim(process, "run-0", lease_seconds=60)
    for file in process:
        ledger.done(file, "run-0", [])
    return Page(_client(monkeypatch, flow), flow, own, default)


def _rows(*ledgers: Ledger) -> list[list[tuple[str, str]]]:
    return [sorted((r["path"], r["state"]) for r in ledger.records()) for ledger in ledgers]


def test_the_page_shows_the_flows_own_ledger(page: Page) -> None:
    detail = page.client.get(page.path()).json()
    assert (detail["flow_id"], detail["ledger_conn_id"]) == ("orders.custom", "byo_page_other")
    ledger = detail["ledger"]
    assert ledger["error"] is None
    assert ledger["counts"] == {"done": 1, "failed": 1, "quarantined": 4}
    assert sorted((p["path"], p["state"]) for p in ledger["problems"]) == sorted(
        [("bad.csv", "failed"), *((name, "quarantined") for name in QUARANTINED)]
    )
    assert page.client.get(page.path("/files")).json()["new"] == 2  # new1.csv, new2.csv
    html = page.client.get(f"/flows/{page.flow.dag_id}/{page.flow.task_id}").text
    assert 'data-count="quarantined">quarantined: 4<' in html
    assert "<code>orders.custom</code> in connection" in html
    assert 'data-path="x[1].csv"' in html


def test_replay_forgets_exactly_the_named_files_in_the_flows_own_ledger(page: Page) -> None:
    default_before = _rows(page.default, Ledger.of("ledgers.t"))
    replay = page.path("/replay")
    assert page.client.post(replay, json={"path": "x[1].csv"}).json() == {"replayed": 1}
    assert page.client.post(replay, json={"path": "a*.csv"}).json() == {"replayed": 1}
    assert page.client.post(replay, json={"path": "bad.csv"}).json() == {
        "replayed": 0
    }  # failed: retried anyway
    assert [p for p, state in _rows(page.own)[0] if state == "quarantined"] == ["a1.csv", "ab.csv"]
    assert page.client.post(replay, json={"paths": ["ab.csv", "a1.csv"]}).json() == {"replayed": 2}
    assert _rows(page.own) == [[("bad.csv", "failed"), ("done.csv", "done")]]
    assert _rows(page.default, Ledger.of("ledgers.t")) == default_before
    assert [e["event"] for e in page.own.history("x[1].csv")][-1] == "forgotten"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"pattern": "*"}, "names files literally"),
        ({}, "path: required"),
        ({"path": " "}, "path: required"),
        ({"paths": []}, "paths: required"),
        ({"paths": ["a.csv", 3]}, "paths: required"),
    ],
)
def test_replay_refuses_globs_and_empty_names(page: Page, body: dict[str, Any], detail: str) -> None:
    response = page.client.post(page.path("/replay"), json=body)
    assert response.status_code == 422
    assert detail in response.json()["detail"]
    assert _rows(page.own)[0].count(("a*.csv", "quarantined")) == 1


def test_a_templated_flow_id_is_not_resolved_on_another_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = serialized_flows(str(tmp_path), t={"flow_id": "{{ dag.dag_id }}.orders"})["t"]
    opened: list[tuple[str, str | None]] = []
    monkeypatch.setattr(Ledger, "of", classmethod(lambda cls, *args: opened.append(args)))
    client = _client(monkeypatch, flow)
    ledger = client.get("/api/flows/ledgers/t").json()["ledger"]
    assert (ledger["counts"], ledger["problems"]) == ({}, [])
    assert "cannot tell which ledger" in ledger["error"]
    assert "flow_id='{{ dag.dag_id }}.orders'" in ledger["error"]
    assert client.get("/api/flows/ledgers/t/files").json()["new"] is None
    replay = client.post("/api/flows/ledgers/t/replay", json={"path": "a.csv"})
    assert replay.status_code == 400
    assert "cannot tell which ledger" in replay.json()["detail"]
    html = client.get("/flows/ledgers/t").text
    assert 'id="ledger-error"' in html
    assert 'id="ledger-counts"' not in html
    assert opened == []


def test_saving_the_same_function_again_keeps_its_version(page: Page, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__FUNCTION_LIBRARY", str(tmp_path / "library"))
    body = {
        "name": "clean",
        "code": "def process(file, ctx):\n    return 1\n",
        "packages": "unidecode==1.3.8",
    }
    first = page.client.post(page.path("/functions"), json=body).json()
    assert (first["ref"], first["unchanged"], first["message"]) == ("clean@1", False, "saved clean@1")
    again = page.client.post(page.path("/functions"), json=body).json()
    assert (again["ref"], again["unchanged"], again["message"]) == (
        "clean@1",
        True,
        "unchanged, still clean@1",
    )
    changed = page.client.post(page.path("/functions"), json=body | {"packages": ""}).json()
    assert (changed["ref"], changed["unchanged"]) == ("clean@2", False)


class _Denies(_AuthManager):
    def is_authorized_dag(self, **kwargs: Any) -> bool:
        return kwargs["details"].id != "secret"


def test_a_test_is_asked_about_and_cancelled_by_whoever_may_edit_its_flow(page: Page, monkeypatch) -> None:
    import threading

    from airflow_byo.plugins.trial_queue import QUEUE, TestJob

    release = threading.Event()

    def work(job: TestJob) -> dict[str, Any]:
        while not (release.is_set() or job.cancelled.wait(0.01)):
            pass
        return {"ok": True, "state": "done", "log": []}

    mine = QUEUE.submit(TestJob("tester", page.flow.dag_id, "t", work=work))
    theirs = QUEUE.submit(TestJob("other", "secret", "t", work=work))
    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", _Denies)
    monkeypatch.setattr(page_app, "TEST_ANSWER_SECONDS", 0.0)
    try:
        assert page.client.get(f"/api/tests/{mine.id}").json()["state"] in ("running", "queued")
        denied = page.client.get(f"/api/tests/{theirs.id}")
        assert denied.status_code == 403
        assert "this Test is of secret, which you may not edit" in denied.json()["detail"]
        assert page.client.post(f"/api/tests/{theirs.id}/cancel", json={}).status_code == 403
        missing = page.client.get("/api/tests/nope")
        assert (missing.status_code, missing.json()["detail"].startswith("no Test nope")) == (404, True)
        assert page.client.post(f"/api/tests/{mine.id}/cancel", content=b"{}").status_code == 415  # JSON only
        answer = page.client.post(f"/api/tests/{mine.id}/cancel", json={}).json()
        if answer["state"] != "cancelled":
            release.set()
            answer = page.client.get(f"/api/tests/{mine.id}").json()
        assert answer["state"] == "cancelled"
        assert answer["error"].startswith("Test cancelled by tester")
    finally:
        release.set()
        QUEUE.answer(theirs, wait=None)
