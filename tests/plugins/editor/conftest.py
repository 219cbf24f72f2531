"""
The flow editor's API in process, with Airflow's own authentication: the page's app (FastAPI's
test client) with a real :class:`SimpleAuthManager` and real JWTs it signed, Airflow's
``get_user``/``requires_access_dag`` dependencies as they are, and the session's migrated SQLite
metadata DB (audit rows, DAGs). Only the auth manager's start-up (which the api-server does) is
done here. The end-to-end test (``tests/e2e/test_flow_editor_api.py``) runs the real api-server.

A spec folder ``dags/flows`` with the factory's marker (as the factory's first parse leaves it),
a local root ``data/`` the page may use, and a source ``data/in`` of three files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_byo.specs import factory_marker

FACTORY = """\
from pathlib import Path

from airflow_byo.specs.factory import build_dags

globals().update(build_dags(Path(__file__).parent / "flows"))
"""
CODE = "def process(file, ctx):\n    return file.open().read().upper()\n"
#: The simple auth manager's roles, by the user names the tests use.
ROLES = {"admin": "admin", "op": "op", "user": "user", "viewer": "viewer"}


def spec(name: str, source: Path, destination: Path, **extra: Any) -> dict[str, Any]:
    """A valid spec as the form sends it: local source and destination under the root."""
    return {
        "name": name,
        "description": "made on the page",
        "source": {"type": "local", "path": str(source), "include": ["*.csv"]},
        "schedule": "manual",
        "processing": {"code": CODE},
        "destination": {"type": "local", "path": str(destination)},
        **extra,
    }


@dataclass
class Editor:
    """The app, the folders, and a JWT per user."""

    app: Any
    root: Path  # the test's folder
    folder: Path  # [byo] spec_folder
    data: Path  # [byo] editor_local_roots
    dag_file: Path
    tokens: dict[str, str]

    def client(self, user: str | None = "user") -> TestClient:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user is not None else {}
        return TestClient(self.app, headers=headers)

    def spec(self, name: str, **extra: Any) -> dict[str, Any]:
        return spec(name, self.data / "in", self.data / f"out-{name}", **extra)

    def create(self, name: str, user: str = "user", **extra: Any) -> dict[str, Any]:
        response = self.client(user).post("/api/specs", json={"spec": self.spec(name, **extra)})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def save(self, name: str, hash_: str, user: str = "user", **extra: Any) -> Any:
        """``PUT /api/specs/<name>``: the spec of :meth:`spec` (``extra`` fields) over content ``hash_``."""
        body = {"spec": self.spec(name, **extra), "hash": hash_}
        return self.request("PUT", f"/api/specs/{name}", user=user, json=body)

    def request(self, method: str, path: str, user: str | None = "user", **kwargs: Any) -> Any:
        return self.client(user).request(method, path, **kwargs)


def _tokens(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "editor-tests-" + "0123456789abcdef" * 4)
    manager = SimpleAuthManager()
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", manager)
    return {
        name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))
        for name, role in ROLES.items()
    }


@pytest.fixture
def metadata_db(migrated_airflow_home: Path) -> Iterator[Path]:
    """Airflow's ORM in this process on a freshly migrated SQLite DB of this test alone."""
    from airflow import settings

    saved = settings.SQL_ALCHEMY_CONN, settings.SQL_ALCHEMY_CONN_ASYNC
    database = migrated_airflow_home / "airflow.db"
    settings.SQL_ALCHEMY_CONN = f"sqlite:///{database}"
    settings.SQL_ALCHEMY_CONN_ASYNC = f"sqlite+aiosqlite:///{database}"
    settings.reconfigure_orm()
    try:
        yield database
    finally:
        settings.SQL_ALCHEMY_CONN, settings.SQL_ALCHEMY_CONN_ASYNC = saved
        settings.reconfigure_orm()


@pytest.fixture
def editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metadata_db: Path) -> Editor:
    from airflow_byo.plugins.app import create_app

    dags, data = tmp_path / "dags", tmp_path / "data"
    folder = dags / "flows"
    folder.mkdir(parents=True)
    (data / "in").mkdir(parents=True)
    for name in ("a.csv", "b.csv", "notes.txt"):
        (data / "in" / name).write_text("id\n1\n")
    dag_file = dags / "byo_flows.py"
    dag_file.write_text(FACTORY)
    factory_marker.record(folder, dag_file)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))  # the path policy's DAGs folder
    monkeypatch.setattr("airflow.settings.DAGS_FOLDER", str(dags))  # the dags-folder bundle's path
    monkeypatch.setenv("AIRFLOW__BYO__SPEC_FOLDER", str(folder))
    monkeypatch.setenv("AIRFLOW__BYO__EDITOR_LOCAL_ROOTS", str(data))
    monkeypatch.delenv("AIRFLOW__BYO__FLOW_EDITORS", raising=False)
    monkeypatch.delenv("AIRFLOW__BYO__SPEC_GIT_PUSH_CONN_ID", raising=False)
    return Editor(create_app(), tmp_path, folder, data, dag_file, _tokens(monkeypatch))


def audit_rows(dag_id: str) -> list[dict[str, Any]]:
    """The audit log's rows of ``dag_id``, oldest first (event, owner, extra as JSON)."""
    from airflow.models.log import Log
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(Log).where(Log.dag_id == dag_id).order_by(Log.id)).all()
        return [{"event": r.event, "owner": r.owner, "extra": json.loads(r.extra or "{}")} for r in rows]


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` as a user would (test set-up and checks only)."""
    done = subprocess.run(
        ["git", "-C", str(cwd), "-c", "user.name=setup", "-c", "user.email=setup@test", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def git_work_tree(root: Path, folder: Path, remote: Path | None = None) -> None:
    """Make ``root`` a git work tree (with ``remote`` a bare repository as its origin)."""
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("data/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    if remote is not None:
        shutil.rmtree(remote, ignore_errors=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True, timeout=60)
        git(root, "push", "-q", str(remote), "main")
