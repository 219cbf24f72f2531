"""
``/api/editor``: what the New flow form reads and asks before a save -- options (connections
without secrets, runtimes, frequencies, the spec folder's state), browse and match (local under the
roots, S3 on a real moto server, bounded), the schedule preview, validate at the YAML's lines, and
a Test of the unsaved form on the page's one engine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.plugins.editor import listing
from tests.plugins.editor.conftest import Editor


def test_options_list_connections_by_id_type_and_description_only(
    editor: Editor, connections: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = {"login": "AKIA-LOGIN", "password": "s3cr3t-pass", "extra": {"endpoint_url": "http://x"}}
    connections("env_s3", {"conn_type": "aws", "description": "landing bucket", **secret})
    monkeypatch.setenv("AIRFLOW_CONN_ENV_SFTP", "sftp://me:hunter22@files.example:22/in")
    connections("env_pg", {"conn_type": "postgres", "host": "db"})
    _add_connection("db_ssh", "ssh", password="db-secret-pw", description="from the DB")
    options = editor.request("GET", "/api/editor/options", user="viewer").json()
    assert options["connections"] == [
        {"conn_id": "db_ssh", "conn_type": "ssh", "description": "from the DB"},
        {"conn_id": "env_s3", "conn_type": "aws", "description": "landing bucket"},
        {"conn_id": "env_sftp", "conn_type": "sftp", "description": ""},
    ]
    text = json.dumps(options)
    for value in ("AKIA-LOGIN", "s3cr3t-pass", "hunter22", "files.example", "db-secret-pw", "http://x"):
        assert value not in text
    assert options["can_create"] is False  # a viewer
    assert editor.request("GET", "/api/editor/options").json()["can_create"] is True


def _add_connection(conn_id: str, conn_type: str, **fields: Any) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add(Connection(conn_id=conn_id, conn_type=conn_type, **fields))


def test_options_list_runtimes_functions_frequencies_and_roots(editor: Editor) -> None:
    options = editor.request("GET", "/api/editor/options").json()
    default = options["runtimes"][0]
    assert default == {
        "name": "default",
        "description": default["description"],
        "packages": [],
        "python": None,
    }
    values = [f["value"] for f in options["frequencies"]]
    assert values[:3] == ["once", "manual", "every 5 min"]
    assert values[-2:] == ["on new files", "cron"]
    assert options["local_roots"] == [str(editor.data)]
    assert options["spec_folder"]["state"] == "ok"
    assert options["spec_folder"]["path"] == str(editor.folder)
    assert options["spec_folder"]["dag_files"] == [str(editor.dag_file)]


def test_browse_lists_a_local_folder_under_the_roots_only(editor: Editor) -> None:
    start = editor.request("POST", "/api/editor/browse", json={"type": "local", "path": ""}).json()
    assert start["entries"] == [{"name": str(editor.data), "kind": "dir", "size": None, "modified": None}]
    (editor.data / "in" / "sub").mkdir()
    (editor.data / "in" / "link.csv").symlink_to("/etc/passwd")
    answer = editor.request(
        "POST", "/api/editor/browse", json={"type": "local", "path": str(editor.data / "in")}
    )
    assert [(e["name"], e["kind"]) for e in answer.json()["entries"]] == [
        ("sub", "dir"), ("a.csv", "file"), ("b.csv", "file"), ("notes.txt", "file"),
    ]  # fmt: skip
    assert answer.json()["truncated"] is False
    assert answer.json()["entries"][1]["size"] == 5
    for outside in ("/etc", str(editor.data / ".." / "dags"), "relative"):
        refused = editor.request("POST", "/api/editor/browse", json={"type": "local", "path": outside})
        assert refused.status_code == 422, outside
        assert refused.json()["errors"][0]["field"] == "path", outside


def test_browse_is_bounded_in_entries(editor: Editor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "MAX_ENTRIES", 2)
    answer = editor.request(
        "POST", "/api/editor/browse", json={"type": "local", "path": str(editor.data / "in")}
    )
    assert len(answer.json()["entries"]) == 2
    assert answer.json()["truncated"] is True


def test_browse_is_bounded_in_time(editor: Editor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "MAX_SECONDS", 0.2)

    def slow(path: str) -> list[dict[str, Any]]:
        time.sleep(2)
        return []

    monkeypatch.setattr(listing, "_local_entries", slow)
    answer = editor.request(
        "POST", "/api/editor/browse", json={"type": "local", "path": str(editor.data)}
    ).json()
    assert answer["truncated"] is True
    assert "longer than 0.2 s" in answer["error"]


def test_browse_and_match_on_s3_through_the_connection(
    editor: Editor, s3_server: Any, connections: Any
) -> None:
    client = s3_server.client()
    client.create_bucket(Bucket="landing")
    for key in ("in/a.csv", "in/b.csv", "in/c.txt", "in/2024/d.csv", "top.csv"):
        client.put_object(Bucket="landing", Key=key, Body=b"id\n1\n")
    connections("landing_s3", s3_server.connection())
    browse = editor.request(
        "POST", "/api/editor/browse", json={"type": "s3", "conn_id": "landing_s3", "path": "landing/in"}
    )
    assert browse.status_code == 200, browse.text
    assert [(e["name"], e["kind"]) for e in browse.json()["entries"]] == [
        ("2024", "dir"), ("a.csv", "file"), ("b.csv", "file"), ("c.txt", "file"),
    ]  # fmt: skip
    buckets = editor.request(
        "POST", "/api/editor/browse", json={"type": "s3", "conn_id": "landing_s3", "path": ""}
    )
    assert "landing" in [e["name"] for e in buckets.json()["entries"]]
    source = {
        "type": "s3",
        "conn_id": "landing_s3",
        "path": "landing/in",
        "include": ["*.csv"],
        "exclude": ["b*"],
    }
    match = editor.request("POST", "/api/editor/match", json={"source": source}).json()
    assert match == {"listed": 4, "matching": 2, "sample": ["2024/d.csv", "a.csv"], "truncated": False}


def test_s3_errors_name_the_connection_never_its_secret(
    editor: Editor, s3_server: Any, connections: Any
) -> None:
    connections("wrong_s3", s3_server.connection(password="not-the-right-secret-key"))
    answer = editor.request(
        "POST", "/api/editor/browse", json={"type": "s3", "conn_id": "wrong_s3", "path": "landing"}
    )
    assert answer.status_code == 400
    assert "connection 'wrong_s3'" in answer.json()["detail"]
    assert "not-the-right-secret-key" not in answer.text
    missing = editor.request("POST", "/api/editor/browse", json={"type": "s3", "path": "landing"})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "conn_id"
    userinfo = editor.request(
        "POST", "/api/editor/browse", json={"type": "sftp", "conn_id": "x", "path": "sftp://me:pw@host/in"}
    )
    assert userinfo.status_code == 422
    assert "credentials in the path" in userinfo.json()["errors"][0]["message"]


def test_match_counts_the_local_files_the_filters_take(editor: Editor) -> None:
    source = {"type": "local", "path": str(editor.data / "in"), "include": ["*.csv"], "min_size": 1}
    answer = editor.request("POST", "/api/editor/match", json={"source": source}).json()
    assert answer == {"listed": 3, "matching": 2, "sample": ["a.csv", "b.csv"], "truncated": False}
    bad = editor.request("POST", "/api/editor/match", json={"source": source | {"min_size": -1}})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "source.min_size"
    outside = editor.request("POST", "/api/editor/match", json={"source": source | {"path": "/etc"}})
    assert outside.status_code == 422
    assert outside.json()["errors"][0]["field"] == "source.path"


@pytest.mark.parametrize(
    ("schedule", "airflow_schedule", "runs"),
    [
        ("hourly", "@hourly", 5),
        ("0 6 * * 1-5", "0 6 * * 1-5", 5),
        ("manual", None, 0),
        ("on new files", None, 0),
    ],
)
def test_schedule_preview(editor: Editor, schedule: str, airflow_schedule: str | None, runs: int) -> None:
    answer = editor.request("POST", "/api/editor/schedule", user="viewer", json={"schedule": schedule}).json()
    if airflow_schedule:
        assert answer["airflow_schedule"] == airflow_schedule
    assert len(answer["next_runs"]) == runs
    if runs:
        assert answer["next_runs"] == sorted(answer["next_runs"])


def test_schedule_preview_of_cron_runs_and_assets() -> None:
    from datetime import UTC, datetime

    from airflow_byo.plugins.editor.options import schedule_preview

    answer = schedule_preview("0 6 * * 1-5", now=datetime(2024, 5, 3, 7, 0, tzinfo=UTC))  # a Friday
    assert [run[:16] for run in answer["next_runs"]] == [
        "2024-05-06T06:00", "2024-05-07T06:00", "2024-05-08T06:00", "2024-05-09T06:00", "2024-05-10T06:00",
    ]  # fmt: skip
    assert schedule_preview("asset:s3://bucket/ready")["airflow_schedule"] == "Asset(s3://bucket/ready)"


def test_a_bad_schedule_is_a_422_naming_the_field(editor: Editor) -> None:
    answer = editor.request("POST", "/api/editor/schedule", json={"schedule": "every tuesday"})
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert error["field"] == "schedule"
    assert "'every tuesday' is not a schedule" in error["message"]
    assert answer.json()["detail"].startswith("schedule: ")


def test_validate_reports_errors_at_the_lines_of_the_yaml_it_would_save(editor: Editor) -> None:
    spec = editor.spec("orders")
    spec["processing"]["runtime_config"] = {"job_config": {"timeout_seconds": "soon"}}
    answer = editor.request("POST", "/api/editor/validate", user="viewer", json={"spec": spec}).json()
    assert answer["ok"] is False
    [error] = answer["errors"]
    assert error["field"] == "processing.runtime_config"
    assert answer["yaml"].splitlines()[error["line"] - 1].strip() == "job_config:"
    assert "timeout_seconds" in error["message"]
    assert "byo-editor-" not in error["message"]
    good = editor.request("POST", "/api/editor/validate", json={"spec": editor.spec("orders")}).json()
    assert good == {"ok": True, "errors": [], "yaml": good["yaml"]}
    assert not list(editor.folder.glob("*.yaml"))  # validate writes nothing


def test_validate_never_imports_a_reference(
    editor: Editor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "evil_module.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\ndef f(file, ctx): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = editor.spec("orders") | {"processing": {"reference": "evil_module:f"}}
    answer = editor.request("POST", "/api/editor/validate", json={"spec": spec}).json()
    assert answer["errors"][0]["field"] == "processing.reference"
    assert not (tmp_path / "imported").exists()


def _test(editor: Editor, body: dict[str, Any], user: str = "user") -> Any:
    """POST /api/editor/test, then poll the Test until it is done (the first builds its environment)."""
    for _ in range(600):
        answer = editor.request("POST", "/api/editor/test", user=user, json=body)
        result = answer.json() if answer.status_code == 200 else answer
        while isinstance(result, dict) and result.get("state") in ("queued", "running"):
            result = editor.request("GET", f"/api/tests/{result['test_id']}", user=user).json()
        if not (isinstance(result, dict) and result.get("state") == "building"):
            return result
        time.sleep(0.5)
    raise AssertionError("environment never ready")


@pytest.mark.venv
def test_the_unsaved_form_is_tested_on_the_pages_engine(editor: Editor) -> None:
    spec = editor.spec("orders")
    spec["processing"] = {"code": "def process(file, ctx, *, tag):\n    return tag + file.open().read()\n",
                          "runtime_config": {"custom_code": {"kwargs": {"tag": "T:"}}}}  # fmt: skip
    result = _test(editor, {"spec": spec, "test_file": "a.csv"})
    assert result["ok"] is True, result
    assert result["previews"][0]["lines"][0] == "T:id"
    assert not list(editor.folder.glob("*.yaml"))
    assert not (editor.data / "out-orders").exists()
    excluded = _test(editor, {"spec": spec, "test_file": "notes.txt"})
    assert excluded["ok"] is False
    assert "include" in excluded["error"]
    outside = _test(editor, {"spec": spec, "test_file": "/etc/passwd"})
    assert outside["ok"] is False
    assert "not a file of the flow's source" in outside["error"]


def test_a_test_of_a_spec_the_page_may_not_save_is_refused(editor: Editor) -> None:
    spec = editor.spec("orders") | {"source": {"type": "local", "path": "/etc", "include": ["passwd"]}}
    answer = _test(editor, {"spec": spec, "test_file": "passwd"})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "source.path"
    reference = editor.spec("orders") | {"processing": {"reference": "os:system"}}
    answer = _test(editor, {"spec": reference, "test_file": "a.csv"})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "processing.reference"
    no_file = editor.request("POST", "/api/editor/test", json={"spec": editor.spec("orders")})
    assert no_file.status_code == 422
    assert no_file.json()["errors"][0]["field"] == "test_file"
    viewer = editor.request(
        "POST", "/api/editor/test", user="viewer", json={"spec": spec, "test_file": "a.csv"}
    )
    assert viewer.status_code == 403


def test_browse_and_match_on_sftp_through_the_connection(
    editor: Editor, sftp_server: Any, connections: Any
) -> None:
    folder = sftp_server.root / "landing"
    (folder / "2024").mkdir(parents=True)
    for name in ("a.csv", "b.txt", "2024/c.csv"):
        (folder / name).write_text("id\n1\n")
    sftp_server.give(folder)
    connections("landing_sftp", sftp_server.connection())
    browse = editor.request(
        "POST", "/api/editor/browse", json={"type": "sftp", "conn_id": "landing_sftp", "path": str(folder)}
    )
    assert browse.status_code == 200, browse.text
    assert [(e["name"], e["kind"]) for e in browse.json()["entries"]] == [
        ("2024", "dir"), ("a.csv", "file"), ("b.txt", "file"),
    ]  # fmt: skip
    source = {"type": "sftp", "conn_id": "landing_sftp", "path": str(folder), "include": ["*.csv"]}
    match = editor.request("POST", "/api/editor/match", json={"source": source}).json()
    assert match == {"listed": 3, "matching": 2, "sample": ["2024/c.csv", "a.csv"], "truncated": False}
