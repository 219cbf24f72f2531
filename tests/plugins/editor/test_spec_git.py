"""
Git where the spec folder is a git work tree, with real git: each save, delete and revert is a
commit of that one file by the Airflow user; with ``[byo] spec_git_push_conn_id`` it is pushed --
to a bare repository on disk, and over HTTPS-style basic auth to a real smart-HTTP server on
127.0.0.1 (``git http-backend``) whose login and password reach git through the askpass helper,
never an argument list. A failed push keeps the saved file and says what failed.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.plugins.editor import spec_git
from tests.plugins.editor.conftest import Editor, audit_rows, git, git_work_tree


def _log(repo: Path, *args: str) -> str:
    return git(repo, "log", "--format=%an <%ae>|%s", *args)


def test_each_write_is_a_commit_of_that_file_by_the_airflow_user(editor: Editor) -> None:
    git_work_tree(editor.root, editor.folder)
    (editor.root / "unrelated.txt").write_text("staged by someone else\n")
    git(editor.root, "add", "unrelated.txt")
    created = editor.create("orders", user="op")
    assert created["git"]["commit"] == git(editor.root, "rev-parse", "HEAD")
    assert created["git"]["error"] is None
    assert _log(editor.root, "-1") == "op <op@airflow>|Create flow orders (BYO Flows page)"
    assert git(editor.root, "show", "--name-only", "--format=", "HEAD") == "dags/flows/orders.yaml"
    assert "A  unrelated.txt" in git(editor.root, "status", "--short")  # still staged, not committed
    saved = editor.save("orders", created["hash"], user="admin", description="x").json()
    reverted = editor.request(
        "POST", "/api/specs/orders/revert", json={"version": 1, "hash": saved["hash"]}
    ).json()
    editor.request("DELETE", "/api/specs/orders", json={"hash": reverted["hash"]})
    assert _log(editor.root, "-4").splitlines() == [
        "user <user@airflow>|Delete flow orders (BYO Flows page)",
        "user <user@airflow>|Revert flow orders to version 1 (BYO Flows page)",
        "admin <admin@airflow>|Update flow orders (BYO Flows page)",
        "op <op@airflow>|Create flow orders (BYO Flows page)",
    ]
    assert next(row["extra"]["commit"] for row in audit_rows("orders")) == created["git"]["commit"]
    assert ".byo-history" not in git(editor.root, "status", "--short", "--untracked-files=all")  # ignored


def test_the_commit_arrives_in_the_bare_remote(
    editor: Editor, connections: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = editor.root / "remote.git"
    git_work_tree(editor.root, editor.folder, remote)
    connections("specs_remote", {"conn_type": "generic", "host": str(remote)})
    monkeypatch.setenv("AIRFLOW__BYO__SPEC_GIT_PUSH_CONN_ID", "specs_remote")
    created = editor.create("orders")
    assert created["git"]["pushed"] is True, created["git"]
    assert git(remote, "rev-parse", "main") == created["git"]["commit"]
    assert _log(remote, "-1", "main") == "user <user@airflow>|Create flow orders (BYO Flows page)"


def test_a_failed_push_keeps_the_saved_and_committed_file(
    editor: Editor, connections: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    git_work_tree(editor.root, editor.folder)
    connections("specs_remote", {"conn_type": "generic", "host": str(editor.root / "no-such-remote.git")})
    monkeypatch.setenv("AIRFLOW__BYO__SPEC_GIT_PUSH_CONN_ID", "specs_remote")
    created = editor.create("orders")
    assert created["git"]["pushed"] is False
    assert created["git"]["commit"]
    assert "saved and committed" in created["git"]["error"]
    assert "not pushed" in created["git"]["error"]
    assert (editor.folder / "orders.yaml").exists()
    monkeypatch.setenv("AIRFLOW__BYO__SPEC_GIT_PUSH_CONN_ID", "undefined_conn")
    second = editor.create("totals")
    assert "connection 'undefined_conn'" in second["git"]["error"]
    assert (editor.folder / "totals.yaml").exists()


def test_a_failed_commit_keeps_the_saved_file(editor: Editor) -> None:
    git_work_tree(editor.root, editor.folder)
    (editor.root / ".git" / "index.lock").write_text("")  # another git is busy in the work tree
    created = editor.create("orders")
    assert created["git"]["commit"] is None
    assert "saved, but not committed" in created["git"]["error"]
    assert (editor.folder / "orders.yaml").exists()


def test_no_git_outside_a_work_tree(tmp_path: Path) -> None:
    assert spec_git.work_tree(tmp_path) is None
    assert spec_git.commit_file(tmp_path, "x.yaml", user="u", message="m", push_conn_id=None) is None


# -- HTTPS-style push with a login and password ------------------------------------------------------


class _GitHttp(BaseHTTPRequestHandler):
    """Smart HTTP through ``git http-backend`` (CGI), behind basic auth."""

    root: Path
    credentials: str

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="specs"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "REMOTE_USER": self.credentials.split(":")[0],
            "REMOTE_ADDR": "127.0.0.1",
        }
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        headers = [line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line]
        status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
        self.send_response(status)
        for key, value in headers:
            if key.lower() != "status":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def http_remote(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A bare repository served over HTTP with basic auth on 127.0.0.1: (its URL, its folder)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = type("Handler", (_GitHttp,), {"root": root, "credentials": "pusher:tok-3141592653"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/specs.git", root / "specs.git"
    finally:
        server.shutdown()
        server.server_close()


def test_a_push_with_login_and_password_goes_through_askpass(
    editor: Editor, connections: Any, monkeypatch: pytest.MonkeyPatch, http_remote: tuple[str, Path]
) -> None:
    url, remote = http_remote
    git_work_tree(editor.root, editor.folder, remote)
    argvs: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(argv: list[str], **kwargs: Any) -> Any:
        argvs.append(list(argv))
        return real_run(argv, **kwargs)

    monkeypatch.setattr(spec_git.subprocess, "run", recording_run)
    connections(
        "specs_https", {"conn_type": "generic", "host": url, "login": "pusher", "password": "tok-3141592653"}
    )
    monkeypatch.setenv("AIRFLOW__BYO__SPEC_GIT_PUSH_CONN_ID", "specs_https")
    created = editor.create("orders")
    assert created["git"]["pushed"] is True, created["git"]
    assert git(remote, "rev-parse", "main") == created["git"]["commit"]
    assert not [argv for argv in argvs if any("tok-3141592653" in part for part in argv)]
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("byo-git-askpass-*/askpass"))  # removed
    connections(
        "specs_https",
        {"conn_type": "generic", "host": url, "login": "pusher", "password": "wrong-password-77"},
    )
    refused = editor.create("totals")
    assert refused["git"]["pushed"] is False
    assert "not pushed" in refused["git"]["error"]
    assert "wrong-password-77" not in str(refused)


def test_a_password_in_the_remote_url_never_reaches_argv_or_errors() -> None:
    url, login, password = spec_git._remote("https://bot:s3cret%21@git.example/specs.git", None, None)
    assert (url, login, password) == ("https://git.example/specs.git", "bot", "s3cret!")
    assert spec_git._scrub("fatal: unable to access 'https://bot:x@git.example/': s3cret!", ("s3cret!",)) == (
        "fatal: unable to access 'https://***@git.example/': ***"
    )
