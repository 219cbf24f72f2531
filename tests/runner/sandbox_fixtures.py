"""
Fixtures of the sandbox's hostile-processor checks, shared by tests/runner/test_sandboxed_flow.py
and the same checks on an image runtime (tests/runner/test_image_sandbox_attacks.py) through
``pytest_plugins``: a module of fixtures, not a test module (a test module registered as a
plugin after it was collected gives no fixtures).
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

#: What the worker's secrets contain: it must never appear in anything a hostile function publishes.
CANARY = "CANARY-s3cr3t-" + uuid.uuid4().hex[:8]


@pytest.fixture
def worker_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A connection password in the worker's environment, and an airflow.cfg and metadata DB with secrets."""
    monkeypatch.setenv("AIRFLOW_CONN_CANARY_DB", f"postgres://user:{CANARY}@db.example/airflow")
    home = tmp_path / "airflow_home"
    home.mkdir()
    (home / "airflow.cfg").write_text(f"[core]\nfernet_key = {CANARY}\n")
    with sqlite3.connect(home / "airflow.db") as db:
        db.execute("create table secret (value text)")
        db.execute("insert into secret values (?)", (CANARY,))
    return {"airflow_cfg": str(home / "airflow.cfg"), "metadata_db": str(home / "airflow.db")}


@pytest.fixture
def tcp_server() -> Any:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"hello from the worker's network")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()
