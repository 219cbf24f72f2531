"""
``/api/specs``: create, read, save, delete, history and revert of flow specs in the spec folder,
in process with real JWTs (see conftest): what lands on disk, the 409 of a stale hash, the 422 of
an invalid spec (at its field and line), names that would escape the folder or hide, the history
and its diffs, the audit rows and the parse request after every write.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml

from airflow_byo.specs.loader import find_specs
from tests.plugins.editor.conftest import CODE, Editor, audit_rows


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _parse_requests() -> list[tuple[str, str]]:
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(DagPriorityParsingRequest.bundle_name, DagPriorityParsingRequest.relative_fileloc)
        )
        return [(str(bundle), str(file)) for bundle, file in rows]


def test_create_writes_the_yaml_the_form_describes(editor: Editor) -> None:
    answer = editor.create("orders", description="Orders: daily\nsecond line")
    path = editor.folder / "orders.yaml"
    text = path.read_text()
    assert answer["file"] == "orders.yaml"
    assert answer["dag_id"] == "orders"
    assert answer["hash"] == _sha(path)
    assert answer["version"] == 1
    assert answer["git"] is None
    # the form's order, code as a block (readable in git), nothing empty written
    assert [line.split(":")[0] for line in text.splitlines() if line and not line[0].isspace()] == [
        "name", "description", "source", "schedule", "processing", "destination",
    ]  # fmt: skip
    assert "  code: |\n    def process(file, ctx):\n" in text
    assert yaml.safe_load(text)["processing"]["code"] == CODE
    assert "null" not in text
    assert "conn_id" not in text
    assert [p.name for p in find_specs(editor.folder)] == ["orders.yaml"]  # history and lock are hidden
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert not [p for p in editor.folder.iterdir() if p.name.endswith(".tmp")]  # no temporary left


def test_a_save_asks_the_dag_processor_to_parse_the_factory_file_now(editor: Editor) -> None:
    answer = editor.create("orders")
    assert answer["reparse"] == "requested"
    assert _parse_requests() == [("dags-folder", "byo_flows.py")]


def test_the_new_flow_is_built_paused(editor: Editor) -> None:
    from airflow_byo.specs.factory import build_dags

    editor.create("orders")
    dags = build_dags(editor.folder)
    assert dags["byo_flow__orders"].is_paused_upon_creation is True


def test_read_gives_spec_yaml_hash_history_and_editable(editor: Editor) -> None:
    editor.create("orders")
    view = editor.request("GET", "/api/specs/orders", user="viewer").json()
    assert view["spec"]["name"] == "orders"
    assert view["yaml"] == (editor.folder / "orders.yaml").read_text()
    assert view["hash"] == _sha(editor.folder / "orders.yaml")
    assert view["editable"] is False
    assert "not edit it" in view["read_only_reason"]
    assert [(v["version"], v["author"], v["action"]) for v in view["history"]] == [(1, "user", "create")]
    assert editor.request("GET", "/api/specs/orders", user="op").json()["editable"] is True


def test_save_checks_the_hash_the_page_loaded(editor: Editor) -> None:
    first = editor.create("orders")
    changed = editor.spec("orders", description="v2")
    saved = editor.request("PUT", "/api/specs/orders", json={"spec": changed, "hash": first["hash"]})
    assert saved.status_code == 200, saved.text
    assert saved.json()["previous_hash"] == first["hash"]
    assert saved.json()["version"] == 2
    # a second editor still holding the first content: 409 with the file's current hash, file kept
    stale = editor.save("orders", first["hash"], description="v3")
    assert stale.status_code == 409
    assert stale.json()["current_hash"] == saved.json()["hash"] == _sha(editor.folder / "orders.yaml")
    assert "changed since you loaded it" in stale.json()["detail"]
    assert "description: v2" in (editor.folder / "orders.yaml").read_text()


def test_a_file_changed_on_disk_is_never_overwritten_and_kept_in_history(editor: Editor) -> None:
    first = editor.create("orders")
    path = editor.folder / "orders.yaml"
    path.write_text(path.read_text().replace("made on the page", "edited in git"))
    refused = editor.save("orders", first["hash"])
    assert refused.status_code == 409
    assert refused.json()["current_hash"] == _sha(path)
    reloaded = editor.request("GET", "/api/specs/orders").json()
    saved = editor.save("orders", reloaded["hash"], description="v3")
    assert saved.status_code == 200, saved.text
    history = editor.request("GET", "/api/specs/orders").json()["history"]
    assert [(v["version"], v["action"]) for v in history] == [(1, "create"), (2, "found"), (3, "save")]
    found = editor.request("GET", "/api/specs/orders/history/2").json()
    assert "edited in git" in found["yaml"]
    assert found["author"] == "(not saved on the page)"


def test_saving_the_same_content_again_makes_no_version(editor: Editor) -> None:
    first = editor.create("orders")
    again = editor.save("orders", first["hash"])
    assert again.json()["unchanged"] is True
    assert again.json()["hash"] == first["hash"]
    assert len(editor.request("GET", "/api/specs/orders").json()["history"]) == 1
    assert [row["event"] for row in audit_rows("orders")] == ["byo.flow.save"]


def test_history_diff_and_revert(editor: Editor) -> None:
    first = editor.create("orders")
    second = editor.save("orders", first["hash"], description="v2").json()
    version = editor.request("GET", "/api/specs/orders/history/1").json()
    assert version["version"] == 1
    assert version["author"] == "user"
    assert "-description: v2\n+description: made on the page\n" in version["diff"]
    assert version["current_hash"] == second["hash"]
    reverted = editor.request("POST", "/api/specs/orders/revert", json={"version": 1, "hash": second["hash"]})
    assert reverted.status_code == 200, reverted.text
    assert reverted.json()["hash"] == first["hash"] == _sha(editor.folder / "orders.yaml")
    assert reverted.json()["version"] == 3
    assert reverted.json()["reverted_to"] == 1
    assert editor.request("GET", "/api/specs/orders/history/9").status_code == 404
    stale = editor.request("POST", "/api/specs/orders/revert", json={"version": 2, "hash": second["hash"]})
    assert stale.status_code == 409


def test_delete_removes_the_file_keeps_the_history_and_audits(editor: Editor) -> None:
    first = editor.create("orders")
    assert editor.request("DELETE", "/api/specs/orders", json={"hash": "0" * 64}).status_code == 409
    deleted = editor.request("DELETE", "/api/specs/orders", json={"hash": first["hash"]})
    assert deleted.status_code == 200, deleted.text
    assert not (editor.folder / "orders.yaml").exists()
    assert editor.request("GET", "/api/specs/orders").status_code == 404
    assert editor.request("GET", "/api/specs/orders/history/1").json()["diff"].startswith("--- (deleted)")
    rows = audit_rows("orders")
    assert [(r["event"], r["owner"]) for r in rows] == [
        ("byo.flow.save", "user"),
        ("byo.flow.delete", "user"),
    ]
    assert rows[1]["extra"]["previous_hash"] == first["hash"]
    assert rows[1]["extra"]["file"] == "orders.yaml"
    assert "def process" not in str(rows)  # never the code itself


def test_audit_rows_of_save_and_revert(editor: Editor) -> None:
    first = editor.create("orders", user="op")
    second = editor.save("orders", first["hash"], user="admin", description="x").json()
    editor.request("POST", "/api/specs/orders/revert", json={"version": 1, "hash": second["hash"]})
    rows = audit_rows("orders")
    assert [(r["event"], r["owner"], r["extra"]["action"]) for r in rows] == [
        ("byo.flow.save", "op", "create"),
        ("byo.flow.save", "admin", "save"),
        ("byo.flow.revert", "user", "revert"),
    ]
    wanted = {"hash": second["hash"], "previous_hash": first["hash"], "file": "orders.yaml", "commit": None}
    assert rows[1]["extra"].items() >= wanted.items()


def test_an_invalid_spec_gets_field_errors_at_its_lines(editor: Editor) -> None:
    bad = editor.spec("orders", schedule="hourlly")
    bad["processing"] = {"code": "def process(file, ctx):\n    return (\n"}
    answer = editor.request("POST", "/api/specs", json={"spec": bad})
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == ["schedule"]
    assert errors[0]["line"] == 8
    assert "'hourlly' is not a schedule" in errors[0]["message"]
    bad["schedule"] = "hourly"
    errors = editor.request("POST", "/api/specs", json={"spec": bad}).json()["errors"]
    assert errors[0]["field"] == "processing.code"
    assert errors[0]["line"] == 12
    assert not (editor.folder / "orders.yaml").exists()


@pytest.mark.parametrize(
    ("spec", "field", "says"),
    [
        (
            {"source": {"type": "local", "path": "/etc"}},
            "source.path",
            "outside the folders flows made on the page",
        ),
        (
            {"destination": {"type": "local", "path": "relative/out"}},
            "destination.path",
            "not an absolute path",
        ),
        ({"source": {"type": "s3", "path": "bucket/in"}}, "source.conn_id", "pick the Airflow connection"),
        (
            {"source": {"type": "sftp", "conn_id": "c", "path": "sftp://me:secret@host/in"}},
            "source.path",
            "credentials in the path",
        ),
        (
            {"processing": {"reference": "os:system"}},
            "processing.reference",
            "imports code from the DAGs folder",
        ),
        (
            {"notifications": {"channels": [{"type": "file", "path": "/tmp/byo-notes.jsonl"}]}},
            "notifications.channels.0.path",
            "outside the folders",
        ),
        (
            {"notifications": {"channels": [{"type": "webhook", "url": "https://u:p@hooks.example/x"}]}},
            "notifications.channels.0.url",
            "credentials in the URL",
        ),
        ({"name": ".hidden"}, "name", "use letters, digits"),
        ({"name": "../escape"}, "name", "use letters, digits"),
        ({"sourcee": {}}, "sourcee", "did you mean 'source'?"),
    ],
)
def test_the_page_refuses_what_it_may_not_save(editor: Editor, spec: dict, field: str, says: str) -> None:
    body = editor.spec("orders") | spec
    answer = editor.request("POST", "/api/specs", json={"spec": body})
    assert answer.status_code == 422, answer.text
    [error] = [e for e in answer.json()["errors"] if e["field"] == field]
    assert says in error["message"]
    assert error["line"] is not None
    assert list(editor.folder.glob("*.yaml")) == []


def test_the_path_policy_still_refuses_platform_folders_inside_a_root(
    editor: Editor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__EDITOR_LOCAL_ROOTS", str(editor.root))  # the DAGs folder is inside
    answer = editor.request(
        "POST",
        "/api/specs",
        json={"spec": editor.spec("orders") | {"destination": {"type": "local", "path": str(editor.folder)}}},
    )
    [error] = answer.json()["errors"]
    assert error["field"] == "destination.path"
    assert "the DAGs folder" in error["message"]


def test_no_local_roots_means_no_local_folders(editor: Editor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__EDITOR_LOCAL_ROOTS", "")
    [error, *_] = editor.request("POST", "/api/specs", json={"spec": editor.spec("orders")}).json()["errors"]
    assert error["field"] == "source.path"
    assert "[byo] editor_local_roots is empty" in error["message"]


def test_names_that_exist_or_collide_are_refused(editor: Editor) -> None:
    editor.create("orders")
    assert editor.request("POST", "/api/specs", json={"spec": editor.spec("orders")}).status_code == 409
    (editor.folder / "Totals.YAML").write_text("name: other\n")  # a case-insensitive twin of totals.yaml
    twin = editor.request("POST", "/api/specs", json={"spec": editor.spec("totals")})
    assert twin.status_code == 409
    assert "Totals.YAML already exists" in twin.json()["detail"]
    (editor.folder / "team").mkdir()
    (editor.folder / "team" / "legacy.yaml").write_text(yaml.safe_dump(editor.spec("legacy")))
    declared = editor.request("POST", "/api/specs", json={"spec": editor.spec("legacy")})
    assert declared.status_code == 409
    assert "team/legacy.yaml already declares" in declared.json()["detail"]


def test_a_name_of_an_existing_dag_is_refused(editor: Editor) -> None:
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add(DagBundleModel(name="dags-folder"))
        session.flush()
        session.add(DagModel(dag_id="python_dag", bundle_name="dags-folder", is_stale=False))
    answer = editor.request("POST", "/api/specs", json={"spec": editor.spec("python_dag")})
    assert answer.status_code == 409
    assert "a DAG named 'python_dag' already exists" in answer.json()["detail"]


@pytest.mark.parametrize("name", [".hidden", "..", "a b", "%2e%2e%2fetc%2fpasswd", "x" * 201])
def test_names_in_the_url_that_no_spec_can_have_are_refused(editor: Editor, name: str) -> None:
    for method, path in (
        ("GET", ""),
        ("PUT", ""),
        ("DELETE", ""),
        ("GET", "/history/1"),
        ("POST", "/revert"),
    ):
        answer = editor.request(
            method, f"/api/specs/{name}{path}", user="admin", json={"hash": "0" * 64, "version": 1}
        )
        assert answer.status_code in (404, 405, 422), (method, path, answer.text)
        if answer.status_code == 422:
            assert answer.json()["errors"][0]["field"] in ("name", "spec")


def test_a_spec_committed_by_hand_is_edited_in_place(editor: Editor) -> None:
    (editor.folder / "team").mkdir()
    path = editor.folder / "team" / "legacy.yml"
    path.write_text("# reviewed in git\n" + yaml.safe_dump(editor.spec("legacy")))
    view = editor.request("GET", "/api/specs/legacy").json()
    assert view["file"] == "team/legacy.yml"
    assert view["editable"] is True
    assert view["history"] == []
    saved = editor.save("legacy", view["hash"], description="x")
    assert saved.status_code == 200, saved.text
    assert "description: x" in path.read_text()
    assert not (editor.folder / "legacy.yaml").exists()
    assert [v["action"] for v in editor.request("GET", "/api/specs/legacy").json()["history"]] == [
        "found",
        "save",
    ]


def test_a_flow_keeps_its_name(editor: Editor) -> None:
    first = editor.create("orders")
    answer = editor.request(
        "PUT", "/api/specs/orders", json={"spec": editor.spec("renamed"), "hash": first["hash"]}
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "name"


def test_a_link_in_place_of_the_spec_is_never_written_through(editor: Editor) -> None:
    outside = editor.root / "outside.yaml"
    outside.write_text(yaml.safe_dump(editor.spec("linked")))
    os.symlink(outside, editor.folder / "linked.yaml")
    before = outside.read_text()
    answer = editor.save("linked", _sha(outside))
    assert answer.status_code == 409
    assert "is a symbolic link" in answer.json()["detail"]
    assert outside.read_text() == before
    assert editor.request("GET", "/api/specs/linked").status_code == 409


def test_hash_and_spec_are_required(editor: Editor) -> None:
    editor.create("orders")
    missing = editor.request("PUT", "/api/specs/orders", json={"spec": editor.spec("orders")})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "hash"
    no_spec = editor.request("POST", "/api/specs", json={"name": "x"})
    assert no_spec.status_code == 422
    assert no_spec.json()["errors"][0]["field"] == "spec"
    form = editor.client().post("/api/specs", data={"spec": "x"})
    assert form.status_code == 415


def test_the_size_limit_holds(editor: Editor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__MAX_SPEC_BYTES", "400")
    answer = editor.request("POST", "/api/specs", json={"spec": editor.spec("orders", description="x" * 500)})
    assert answer.status_code == 422
    assert "over [byo] max_spec_bytes (400 bytes)" in answer.json()["errors"][0]["message"]


def test_a_json_spec_stays_json(editor: Editor) -> None:
    path = editor.folder / "totals.json"
    path.write_text(json.dumps(editor.spec("totals")))
    view = editor.request("GET", "/api/specs/totals").json()
    assert editor.save("totals", view["hash"], description="x").status_code == 200
    assert json.loads(path.read_text())["description"] == "x"
    checked = editor.request("POST", "/api/editor/validate", json={"spec": editor.spec("totals")}).json()
    assert checked["ok"] is True
    assert json.loads(checked["yaml"])["name"] == "totals"  # the text a save of that file writes
