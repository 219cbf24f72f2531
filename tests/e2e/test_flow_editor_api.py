"""
The flow editor's API on the shared running deployment, with real JWTs of the simple auth manager
(``admin``, ``op``, ``user``, ``viewer``): anonymous 401 on every route, a viewer reads and is
refused every write, ``user``/``op``/``admin`` write (the simple auth manager lets role USER and up
edit DAGs), a Save is a paused DAG within seconds (the parse request), Delete makes it go, and
every write is a row of Airflow's audit log (``GET /api/v2/eventLogs``).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.deployment import Deployment

pytestmark = pytest.mark.e2e

CODE = "def process(file, ctx):\n    return file.open().read().upper()\n"


def _http(deployment: Deployment, user: str | None) -> httpx.Client:
    """A client of the page's app (``/byo``) as ``user`` (None: anonymous), raw answers."""
    return deployment.client(user).http


def _spec(deployment: Deployment, name: str, **extra: Any) -> dict[str, Any]:
    data = deployment.editor_data / name
    (data / "in").mkdir(parents=True, exist_ok=True)
    (data / "in" / "a.csv").write_text("id\n1\n")
    return {
        "name": name,
        "description": "made through the editor's API",
        "source": {"type": "local", "path": str(data / "in"), "include": ["*.csv"]},
        "schedule": "manual",
        "processing": {"code": CODE},
        "destination": {"type": "local", "path": str(data / "out")},
        **extra,
    }


def _create(deployment: Deployment, name: str, user: str = "user") -> dict[str, Any]:
    answer = _http(deployment, user).post("/byo/api/specs", json={"spec": _spec(deployment, name)})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def _writes(deployment: Deployment, name: str, hash_: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    spec = _spec(deployment, name)
    return [
        ("POST", "/byo/api/specs", {"spec": _spec(deployment, _name("byo_e2e_editor_denied"))}),
        ("PUT", f"/byo/api/specs/{name}", {"spec": spec, "hash": hash_}),
        ("DELETE", f"/byo/api/specs/{name}", {"hash": hash_}),
        ("POST", f"/byo/api/specs/{name}/revert", {"version": 1, "hash": hash_}),
        ("GET", f"/byo/api/specs/{name}/history/1", None),
        ("POST", "/byo/api/editor/browse", {"type": "local", "path": str(deployment.editor_data)}),
        ("POST", "/byo/api/editor/match", {"source": spec["source"]}),
        ("POST", "/byo/api/editor/test", {"spec": spec, "test_file": "a.csv"}),
    ]


def _reads(name: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/byo/api/editor/options", None),
        ("POST", "/byo/api/editor/schedule", {"schedule": "0 6 * * *"}),
        ("POST", "/byo/api/editor/validate", {"spec": {"name": name}}),
        ("GET", f"/byo/api/specs/{name}", None),
    ]


def test_anonymous_401_and_a_viewer_reads_but_never_writes(deployment: Deployment) -> None:
    name = _name("byo_e2e_editor_rights")
    created = _create(deployment, name)
    for method, path, body in [*_writes(deployment, name, created["hash"]), *_reads(name)]:
        anonymous = _http(deployment, None).request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
    for method, path, body in _writes(deployment, name, created["hash"]):
        answer = _http(deployment, "viewer").request(method, path, json=body)
        assert answer.status_code == 403, (method, path, answer.text)
    for method, path, body in _reads(name):
        answer = _http(deployment, "viewer").request(method, path, json=body)
        assert answer.status_code == 200, (method, path, answer.text)
    view = _http(deployment, "viewer").get(f"/byo/api/specs/{name}").json()
    assert view["editable"] is False
    assert view["hash"] == created["hash"]
    options = _http(deployment, "viewer").get("/byo/api/editor/options").json()
    assert options["can_create"] is False
    assert options["spec_folder"]["state"] == "ok"
    assert {"conn_id": deployment.s3_conn_id, "conn_type": "aws", "description": ""} in options["connections"]
    assert "password" not in str(options["connections"])


@pytest.mark.parametrize("user", ["user", "op", "admin"])
def test_users_who_may_edit_dags_create_and_save(deployment: Deployment, user: str) -> None:
    assert _http(deployment, user).get("/byo/api/editor/options").json()["can_create"] is True
    name = _name(f"byo_e2e_editor_{user}")
    created = _create(deployment, name, user)
    spec = _spec(deployment, name, description="saved again")
    saved = _http(deployment, user).put(
        f"/byo/api/specs/{name}", json={"spec": spec, "hash": created["hash"]}
    )
    assert saved.status_code == 200, saved.text
    stale = _http(deployment, "admin").put(
        f"/byo/api/specs/{name}", json={"spec": spec, "hash": created["hash"]}
    )
    assert stale.status_code == 409
    assert stale.json()["current_hash"] == saved.json()["hash"]


def test_a_saved_flow_is_a_paused_dag_within_seconds_and_goes_with_delete(deployment: Deployment) -> None:
    name = _name("byo_e2e_editor_listed")
    started = time.monotonic()
    created = _create(deployment, name, "op")
    assert created["reparse"] == "requested", created
    dag = deployment.wait_for_dag(name, timeout=60)
    seconds = time.monotonic() - started
    deployment.timings["editor API: Save -> DAG listed"] = seconds
    assert dag["is_paused"] is True  # is_paused_upon_creation holds for a DAG that appears after a Save
    assert (deployment.spec_folder / f"{name}.yaml").exists()
    deleted = _http(deployment, "op").request(
        "DELETE", f"/byo/api/specs/{name}", json={"hash": created["hash"]}
    )
    assert deleted.status_code == 200, deleted.text
    gone = deployment.dag(name)  # at once: Delete marks it stale (the dag-processor took 1-2 minutes)
    assert gone is None or gone["is_stale"], gone
    time.sleep(5)  # the parse Delete asked for has run: it must not bring the DAG back
    gone = deployment.dag(name)
    assert gone is None or gone["is_stale"], gone
    events = deployment.api.get("/api/v2/eventLogs", params={"dag_id": name, "limit": 100})["event_logs"]
    mine = [(e["event"], e["owner"]) for e in events if e["event"].startswith("byo.flow.")]
    assert sorted(mine) == [("byo.flow.delete", "op"), ("byo.flow.save", "op")]
    save = next(e for e in events if e["event"] == "byo.flow.save")
    assert created["hash"] in save["extra"]
    assert "def process" not in save["extra"]
    again = _create(deployment, name, "op")  # the name is free again at once
    deployment.wait_until(
        lambda: (dag := deployment.dag(name)) is not None and not dag.get("is_stale"),
        timeout=60,
        what=f"DAG {name} listed again",
    )
    assert (
        _http(deployment, "op")
        .request("DELETE", f"/byo/api/specs/{name}", json={"hash": again["hash"]})
        .is_success
    )


def test_invalid_specs_and_paths_outside_the_roots_are_refused(deployment: Deployment) -> None:
    name = _name("byo_e2e_editor_bad")
    bad = _spec(deployment, name, schedule="hourlly")
    bad["destination"] = {"type": "local", "path": str(Path(deployment.dags_folder))}
    answer = _http(deployment, "user").post("/byo/api/specs", json={"spec": bad})
    assert answer.status_code == 422
    fields = {error["field"] for error in answer.json()["errors"]}
    assert "destination.path" in fields
    escape = _http(deployment, "admin").get("/byo/api/specs/.byo-history")
    assert escape.status_code == 422
    assert not (deployment.spec_folder / f"{name}.yaml").exists()
