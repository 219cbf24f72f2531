"""
The flow editor's HTML pages in process: New, a copy, Edit and History render for a user who may
write (the form) and for a reader (the same form, read-only, with the reason), under the page's
CSP, and every value a user wrote stays text.

Airflow's auth is replaced by a fake auth manager that lets ``editor`` edit and ``viewer`` only
read (the browser journey, ``tests/e2e/test_flow_editor_journey.py``, runs the real one).
"""

from __future__ import annotations

import html
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_byo.plugins import app as page_app
from airflow_byo.plugins import page_data
from airflow_byo.plugins.editor import pages
from tests.plugins.test_flows import serialized_flows

STATIC = Path(page_app.__file__).parent / "static"
EVIL = "</script><script>alert('x')</script><b>"


class _User:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name


class _AuthManager:
    """``editor`` may edit DAGs; everyone may read."""

    def __init__(self, user: _User) -> None:
        self.user = user

    def is_authorized_dag(self, *, method: str, user: _User, **_: Any) -> bool:
        return method == "GET" or user.get_name() == "editor"


def _client(monkeypatch: pytest.MonkeyPatch, name: str) -> TestClient:
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep

    user = _User(name)
    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: _AuthManager(user))
    app = page_app.create_app()
    app.dependency_overrides[page_app.ReadDag.dependency] = lambda: None
    app.dependency_overrides[typing.get_args(GetUserDep)[1].dependency] = lambda: user
    app.dependency_overrides[typing.get_args(SessionDep)[1].dependency] = lambda: None
    return TestClient(app)


@pytest.fixture
def writer(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The app as ``editor``, who may edit DAGs (this module's own fixture, not conftest's ``editor``)."""
    return _client(monkeypatch, "editor")


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The app as ``viewer``, who may only read."""
    return _client(monkeypatch, "viewer")


def _nonce(response: Any) -> str:
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'self'" in policy
    assert "form-action 'none'" in policy
    match = re.search(r"'nonce-([^']+)'", policy)
    assert match, policy
    return match.group(1)


def _assert_safe_page(response: Any) -> str:
    """200, the CSP header, every script carrying the nonce, no inline event handler."""
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    text: str = response.text
    nonce = _nonce(response)
    for tag in re.findall(r"<script\b[^>]*>", text):
        assert 'type="application/json"' in tag or f'nonce="{nonce}"' in tag, tag
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", text, re.IGNORECASE)
    assert "/static/editor.css" in text
    return text


PAGES = ["/new", "/specs/orders/edit", "/specs/orders/history"]


@pytest.mark.parametrize("path", PAGES)
def test_each_page_renders_for_a_writer(writer: TestClient, path: str) -> None:
    text = _assert_safe_page(writer.get(path))
    assert 'id="read-only-note"' not in text
    if path.endswith("history"):
        assert 'id="revert-button"' in text
        assert "/static/editor.js" in text
    else:
        assert '<fieldset id="form-fields" class="flow-form">' in text
        assert 'id="save-button"' in text
        assert 'id="test-button"' in text
        for script in ("editor.js", "editor-form.js", "editor-actions.js"):
            assert f"/static/{script}" in text


@pytest.mark.parametrize("path", PAGES)
def test_a_reader_gets_each_page_read_only_with_the_reason(reader: TestClient, path: str) -> None:
    text = _assert_safe_page(reader.get(path))
    note = re.search(r'id="read-only-note">([^<]+)<', text)
    assert note, text
    for absent in ('id="save-button"', 'id="test-button"', 'id="revert-button"', 'id="delete-yes"'):
        assert absent not in text
    if path == "/new":
        assert "creating a flow needs edit access to DAGs" in note.group(1)
    elif path.endswith("edit"):
        assert "changing it needs edit access to the DAG orders" in note.group(1)
    if not path.endswith("history"):
        assert '<fieldset id="form-fields" class="flow-form" disabled>' in text
        assert 'id="yaml-button"' in text  # a reader may still see the spec as YAML


def test_flow_editors_narrows_who_gets_the_new_form_to_write(
    writer: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__FLOW_EDITORS", "alice,role:data-engineers")
    text = writer.get("/new").text
    assert 'id="read-only-note"' in text
    assert 'id="save-button"' not in text
    assert 'id="save-button"' in writer.get("/specs/orders/edit").text  # editing is the DAG's right


def test_the_edit_page_is_the_prefilled_form_and_new_is_empty(writer: TestClient) -> None:
    edit = writer.get("/specs/orders/edit").text
    assert 'data-mode="edit" data-name="orders"' in edit
    assert re.search(r'id="name"[^>]*readonly', edit)  # the name is the DAG id: copy to rename
    assert '<span id="edit-links">' in edit
    new = writer.get("/new").text
    assert 'data-mode="new" data-name=""' in new
    assert '<span id="edit-links" hidden>' in new
    assert '<script type="application/json" id="prefill">null</script>' in new


def test_a_name_with_markup_stays_text(writer: TestClient) -> None:
    name = "x<script>alert(1)<b>"
    for path in ("edit", "history"):
        text = _assert_safe_page(writer.get(f"/specs/{name}/{path}"))
        assert "<script>alert(1)" not in text
        assert "x&lt;script&gt;alert(1)&lt;b&gt;" in text


def test_every_input_has_a_label(writer: TestClient) -> None:
    text = writer.get("/new").text
    labelled = set(re.findall(r'aria-labelledby="([^"]+)"', text))
    for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", text):
        ident = re.search(r'id="([^"]+)"', tag)
        assert ident, tag
        before = text[: text.index(tag)]
        inside_label = before.rfind("<label") > before.rfind("</label>")
        assert inside_label or ident.group(1) in labelled or "aria-labelledby" in tag, tag


# -- a copy of an operator flow --------------------------------------------------------------------


def _copy_flow(monkeypatch: pytest.MonkeyPatch, description: str) -> Any:
    flow = serialized_flows(
        "s3://bucket/in/2024",
        t={"source_conn_id": "aws_x", "include": ["*.csv"], "packages": "unidecode==1.3.8"},
    )["t"]
    processor = {
        "code": "def process(file, ctx):\n    return '<b>'\n",
        "function_name": "process",
        "packages": "unidecode==1.3.8",
        "reference": None,
        "problem": None,
        "runtime_config": {"job_config": {"output_name": "{stem}.jsonl"}},
    }
    detail = {"description": description, "schedule": "@hourly", "processor": processor}
    monkeypatch.setattr(page_data, "flow_detail", lambda session, f: detail)
    monkeypatch.setattr(pages, "flow_or_404", lambda session, dag_id, task_id: flow)
    return flow


def test_copy_prefills_a_new_spec_and_keeps_markup_as_data(
    writer: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy_flow(monkeypatch, EVIL)
    response = writer.get("/new", params={"copy": "ledgers/t"})
    text = _assert_safe_page(response)
    block = re.search(r'<script type="application/json" id="prefill">(.*?)</script>', text, re.DOTALL)
    assert block, text
    assert "<b>" not in block.group(1)
    assert "</script" not in block.group(1)
    prefill = json.loads(block.group(1))
    assert prefill["description"] == f"A copy of ledgers/t: {EVIL}"
    assert prefill["name"] == "ledgers_t"
    assert prefill["schedule"] == "hourly"
    assert prefill["source"] == {
        "type": "s3",
        "path": "bucket/in/2024",
        "conn_id": "aws_x",
        "include": ["*.csv"],
        "exclude": [],
    }
    assert prefill["destination"] == {"type": "local", "path": "/srv/out"}
    assert prefill["processing"]["code"].startswith("def process(file, ctx):")
    assert prefill["processing"]["packages"] == "unidecode==1.3.8"
    assert prefill["processing"]["runtime_config"] == {"job_config": {"output_name": "{stem}.jsonl"}}
    assert "A copy of the flow <code>ledgers/t</code>" in text


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("s3://bucket/in/", {"type": "s3", "path": "bucket/in"}),
        ("s3://bucket", {"type": "s3", "path": "bucket"}),
        ("sftp:///upload/in", {"type": "sftp", "path": "/upload/in"}),
        ("sftp://***@host/in", {"type": "sftp", "path": "/in"}),
        ("/data/in", {"type": "local", "path": "/data/in"}),
        ("file:///data/in", {"type": "local", "path": "/data/in"}),
    ],
)
def test_a_flows_url_becomes_a_spec_location(url: str, location: dict[str, str]) -> None:
    assert pages._location(url) == location


@pytest.mark.parametrize(
    ("summary", "schedule"),
    [
        ("@hourly", "hourly"),
        ("0 6 * * *", "0 6 * * *"),
        ("0 0 * * *", "daily"),
        ("on new files", "on new files"),
        ("None", "manual"),
        (None, "manual"),
        ("Asset", "manual"),
    ],
)
def test_a_dags_schedule_becomes_a_spec_frequency(summary: str | None, schedule: str) -> None:
    assert pages._schedule(summary) == schedule


@pytest.mark.parametrize(
    ("copy", "status", "message"),
    [
        ("no-task", 422, "copy: give the flow to copy as <dag_id>/<task_id>"),
        ("/t", 422, "copy: give the flow to copy as <dag_id>/<task_id>"),
    ],
)
def test_a_bad_copy_parameter_says_how_to_write_it(
    writer: TestClient, copy: str, status: int, message: str
) -> None:
    response = writer.get("/new", params={"copy": copy})
    assert (response.status_code, response.json()["detail"]) == (status, message)


def test_copy_needs_read_access_to_the_copied_dag(
    monkeypatch: pytest.MonkeyPatch, writer: TestClient
) -> None:
    monkeypatch.setattr(pages, "_authorized", lambda user, method, dag_id: dag_id != "secret")
    response = writer.get("/new", params={"copy": "secret/flow"})
    assert response.status_code == 403
    assert html.unescape(response.json()["detail"]) == "copy: you may not read the DAG 'secret'"


def test_every_page_needs_dag_read_access() -> None:
    from fastapi.routing import APIRoute

    from tests.plugins.test_app import _permission

    routes = [r for r in pages.router.routes if isinstance(r, APIRoute)]
    assert {r.path: _permission(r) for r in routes} == {
        "/new": "GET",
        "/specs/{dag_id}/edit": "GET",  # the path parameter is dag_id: Airflow checks that DAG
        "/specs/{dag_id}/history": "GET",
    }


# -- the static files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["editor.js", "editor-form.js", "editor-actions.js", "editor.css"])
def test_the_editors_static_files_are_served(writer: TestClient, name: str) -> None:
    response = writer.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        "text/css" if name.endswith("css") else "text/javascript"
    )


@pytest.mark.parametrize("name", ["editor.js", "editor-form.js", "editor-actions.js"])
def test_the_scripts_write_text_never_html(name: str) -> None:
    source = (STATIC / name).read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "confirm("):
        assert sink not in source, f"{name} uses {sink}"
