"""
Shared test set-up.

Every test session gets its own ``AIRFLOW_HOME`` (SQLite metadata DB, config, venv cache) in a
temporary directory, set before Airflow is imported, so tests never touch a developer's Airflow.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.backends import Backend, LocalBackend, S3Backend, SftpBackend
from tests.servers import S3Server, SftpServer

if TYPE_CHECKING:
    from airflow_byo.operators.byo_flow import ByoFlowOperator
    from airflow_byo.results import RunSummary, StagedOutput
    from airflow_byo.runner.flow_runner import FlowRunner

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="byo-tests-airflow-home-"))
_PRISTINE_METADATA_DB = _SESSION_HOME.with_name(_SESSION_HOME.name + "-migrated.db")
os.environ["AIRFLOW_HOME"] = str(_SESSION_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags_examples")
os.environ.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
# Flow environments are built with uv when it is on PATH (as the standard provider decides).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

ROOT = Path(__file__).resolve().parents[1]


def run_airflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the ``airflow`` command of this environment, as a user would."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The session's ``AIRFLOW_HOME`` with a migrated SQLite metadata DB."""
    subprocess.run(
        [Path(sys.executable).parent / "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    shutil.copyfile(_SESSION_HOME / "airflow.db", _PRISTINE_METADATA_DB)
    return _SESSION_HOME


@pytest.fixture
def migrated_airflow_home(airflow_home: Path, tmp_path: Path) -> Path:
    """
    A new ``AIRFLOW_HOME`` of this test alone whose SQLite metadata DB is freshly migrated and
    empty: a copy of the session's DB as it was right after ``airflow db migrate`` (migrating
    again would cost ~10 s per test).
    """
    home = tmp_path / "airflow-home"
    home.mkdir()
    shutil.copyfile(_PRISTINE_METADATA_DB, home / "airflow.db")
    return home


def staged_output(path: str | Path, name: str, records: int | None = None, **extra: Any) -> StagedOutput:
    """A taken output as the hand-off makes it (its inode and size recorded) for a file a test wrote."""
    from airflow_byo.results import StagedOutput

    info = os.stat(path)
    return StagedOutput(
        name, str(path), info.st_size, records, device=info.st_dev, inode=info.st_ino, **extra
    )


def fresh_ledger_env(directory: Path) -> dict[str, str]:
    """Environment for an ``airflow`` subprocess with its own, empty ledger (tests stay independent)."""
    return {
        "AIRFLOW_CONN_BYO_TEST_LEDGER": json.dumps(
            {"conn_type": "sqlite", "host": str(directory / "ledger.db")}
        ),
        "AIRFLOW__BYO__LEDGER_CONN_ID": "byo_test_ledger",
    }


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


# -- real servers ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpServer]:
    if os.geteuid() != 0:
        pytest.skip("the SFTP tests create a throwaway user and run sshd, which needs root (CI has it)")
    server = SftpServer(tmp_path_factory.mktemp("sftp"))
    yield server
    server.stop()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, dict[str, Any]], str]:
    """Define an Airflow connection for one test (as ``AIRFLOW_CONN_*``); returns its id."""

    def define(conn_id: str, connection: dict[str, Any]) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
        return conn_id

    return define


@pytest.fixture(params=["local", "s3", "sftp"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, connections: Any) -> Backend:
    """One backend per parameter: ``local``, ``s3`` (moto server) or ``sftp`` (sshd)."""
    if request.param == "local":
        return LocalBackend(tmp_path)
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        return S3Backend(server, connections("byo_s3", server.connection()))
    server = request.getfixturevalue("sftp_server")
    return SftpBackend(server, connections("byo_sftp", server.connection()))


# -- ledger databases -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """
    A fresh, empty ledger database: a SQLite file, or a throwaway database on the local
    PostgreSQL (127.0.0.1:5432). Yields its SQLAlchemy URL and an Airflow connection for it.
    """
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        yield {"url": f"sqlite:///{path}", "connection": {"conn_type": "sqlite", "host": str(path)}}
        return
    import uuid

    import psycopg2

    name = f"byo_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    yield {
        "url": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}",
        "connection": {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "login": "postgres",
            "schema": name,
        },
    }
    from airflow_byo.ledger.database import engine as _engine

    _engine.cache_clear()  # engines of this process hold connections to the database
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def ledger_conn(ledger_db: dict[str, Any], connections: Any) -> str:
    """An Airflow connection ``byo_ledger`` to a fresh ledger database; returns its id."""
    return connections("byo_ledger", ledger_db["connection"])


# -- Airflow task context -------------------------------------------------------------------------


class FakeTaskInstance:
    """The part of a task instance our operators use: ``xcom_push``."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context(**params: Any) -> dict[str, Any]:
    """A task context with ``params`` (e.g. ``test_file=``) and a :class:`FakeTaskInstance`."""
    return {"params": params, "ti": FakeTaskInstance()}


# -- files and flow runs --------------------------------------------------------------------------

#: A processor that turns CSV rows into records (integers times ``factor``), counting rows in.
CSV_TO_RECORDS = """
    import csv
    def process(file, ctx, factor=1):
        with file.open(newline="") as handle:
            for row in csv.DictReader(handle):
                ctx.count("records_in")
                yield {key: int(value) * factor for key, value in row.items()}
"""

#: A processor that upper-cases each text file.
UPPER = "def process(file, ctx):\n    return file.open().read().upper()\n"


def tracked_flow(source: Path, ledger_conn: str, **kwargs: Any) -> ByoFlowOperator:
    """Flow ``dag.flow`` upper-casing the ``*.txt`` files of ``source`` into ``source/../out``."""
    from airflow_byo.operators.byo_flow import ByoFlowOperator

    return ByoFlowOperator(
        task_id="flow",
        flow_id="dag.flow",
        source=str(source),
        include="*.txt",
        destination=str(source.parent / "out"),
        processor=UPPER,
        python_interpreter=sys.executable,
        ledger_conn_id=ledger_conn,
        runtime_config={"job_config": {"output_format": "text"}},
        **kwargs,
    )


def make_files(directory: Path, files: dict[str, str | bytes]) -> None:
    """Create ``files`` (relative name -> text or bytes) under ``directory``."""
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def published(destination: Path) -> dict[str, str]:
    """Every file under the destination (relative name -> text); temp names included on purpose."""
    if not destination.exists():
        return {}
    return {
        str(p.relative_to(destination)): p.read_bytes().decode(errors="replace")
        for p in sorted(destination.rglob("*"))
        if p.is_file()
    }


def assert_no_temporaries(destination: Path) -> None:
    from airflow_byo.storage import TEMP_MARKER

    leftovers = [p for p in destination.rglob("*") if TEMP_MARKER in p.name] if destination.exists() else []
    assert leftovers == []


def inline_runner(
    code: str,
    runtime_config: dict[str, Any] | None = None,
    log: RecordingLogger | None = None,
    sandbox: str | None = None,
) -> FlowRunner:
    """
    A :class:`FlowRunner` for inline ``code`` (dedented) in this interpreter, sandboxed as
    ``[byo] sandbox`` says unless ``sandbox`` is given (``"off"`` for tests whose function leaves
    traces outside its outputs on purpose: attempt counters, pid files).
    """
    import textwrap

    from airflow_byo.flow import FlowEnvironment, ResolvedFlow
    from airflow_byo.runner.flow_runner import FlowRunner

    return FlowRunner(
        flow=ResolvedFlow.resolve(textwrap.dedent(code), runtime_config=runtime_config),
        environment=FlowEnvironment(sys.executable),
        log=log or RecordingLogger(),
        sandbox=sandbox,  # type: ignore[arg-type]
    )


def run_flow(
    tmp_path: Path,
    code: str,
    files: dict[str, str | bytes],
    runtime_config: dict[str, Any] | None = None,
    log: RecordingLogger | None = None,
    sandbox: str | None = None,
) -> tuple[RunSummary, Path]:
    """Run inline ``code`` over ``files`` from ``tmp_path/in`` to ``tmp_path/out``."""
    from airflow_byo.storage import Location

    source, destination = tmp_path / "in", tmp_path / "out"
    source.mkdir(parents=True, exist_ok=True)
    make_files(source, files)
    runner = inline_runner(code, runtime_config, log, sandbox)
    src = Location(str(source), role="source")
    summary = runner.run(src, Location(str(destination), role="destination"), src.list_files())
    return summary, destination


FAULT_POINTS_COVERED: list[str] = []
#: Lines for the end of the run's report, e.g. the e2e deployment's timings.
REPORT_LINES: list[str] = []


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # One deployment for all: under pytest-xdist (`--dist loadgroup`, see ./dev) every end-to-end
    # test goes to the same worker, which starts the shared `deployment` once.
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.xdist_group("e2e"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: its report goes to the controller
        workeroutput["byo_fault_points"] = FAULT_POINTS_COVERED
        workeroutput["byo_report_lines"] = REPORT_LINES


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    output = getattr(node, "workeroutput", {})
    FAULT_POINTS_COVERED.extend(output.get("byo_fault_points", []))
    REPORT_LINES.extend(output.get("byo_report_lines", []))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FAULT_POINTS_COVERED:
        terminalreporter.write_line(
            f"fault injection: {len(FAULT_POINTS_COVERED)} kill points covered: "
            + ", ".join(FAULT_POINTS_COVERED)
        )
    for line in REPORT_LINES:
        terminalreporter.write_line(line)


def throwaway_user(prefix: str, home: str | Path = "/nonexistent") -> pwd.struct_passwd:
    """A new system user for one test module alone (concurrent test sessions must not share one);
    remove it with :func:`remove_user`."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


def remove_user(user: pwd.struct_passwd) -> None:
    subprocess.run(["userdel", "--force", user.pw_name], check=False, capture_output=True)
