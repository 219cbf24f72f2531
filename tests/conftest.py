"""
Shared test set-up.

Every test session gets its own ``AIRFLOW_HOME`` (SQLite metadata DB, config, venv cache) in a
temporary directory, set before Airflow is imported, so tests never touch a developer's Airflow.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="byo-tests-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_SESSION_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags_examples")
os.environ.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
# Flow environments are built with uv when it is on PATH (as the standard provider decides).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The session's ``AIRFLOW_HOME`` with a migrated SQLite metadata DB."""
    subprocess.run(
        [Path(sys.executable).parent / "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _SESSION_HOME


@pytest.fixture(scope="session")
def venv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv cache for the session, so each set of packages is built once."""
    return tmp_path_factory.mktemp("venvs")


class RecordingLogger(logging.Logger):
    """A logger that keeps every formatted message, for asserting on the task log."""

    def __init__(self) -> None:
        super().__init__("byo-test", logging.DEBUG)
        self.lines: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: self.lines.append(record.getMessage())  # type: ignore[method-assign]
        self.addHandler(handler)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def task_log() -> RecordingLogger:
    return RecordingLogger()
