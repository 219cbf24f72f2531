"""
One real Airflow 3.3 deployment for the end-to-end tests, started on free ports of 127.0.0.1.

What runs (each an ordinary ``airflow`` command, as an operator would start it):

- metadata DB: a fresh PostgreSQL database (``byo_e2e_meta_<id>``), migrated with ``airflow db migrate``;
- byo ledger: another fresh PostgreSQL database, the Airflow connection ``byo_ledger``
  (``[byo] ledger_conn_id``), shared by every worker as in production;
- Celery broker: Redis at 127.0.0.1:6379 on a database number of its own (flushed at the end);
- ``api-server`` (REST API, execution API, simple auth manager with fixed users), ``scheduler``,
  ``dag-processor``, ``triggerer`` and two ``airflow celery worker --concurrency 1`` with distinct
  Celery hostnames (``worker-a``, ``worker-b``), CeleryExecutor;
- an S3 API server (moto, :class:`tests.servers.S3Server`) reached through the ``aws`` connection
  ``byo_e2e_s3``.

``Deployment(root, executor="LocalExecutor", s3=False)`` is the one-machine variant (the latency
benchmark, bench/latency.py): the scheduler runs the tasks itself, so no Redis and no workers.

Every process has its own ``AIRFLOW_HOME`` and ``TMPDIR`` under the deployment's directory, and
each worker its own ``[byo] venv_cache_path`` (what stays per machine in a real scale-out); the
DAGs folder, the task-log folder, the metadata DB, the ledger and the object store are shared
(what must be shared). Both workers run on this one machine, so ``[core] hostname_callable``
(:mod:`tests.e2e.hostname`) gives each its own task-instance ``hostname``.

:meth:`Deployment.close` stops everything that was started, drops both databases and flushes the
Redis database, also after a failed start. Logs of every process stay under ``root/logs`` and their
tails are part of every timeout message (:meth:`Deployment.diagnostics`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.e2e.processes import (
    REDIS_PORT,
    Component,
    DeploymentError,
    claim_redis_db,
    pg_admin,
    redis_db,
    tail,
)
from tests.servers import S3Server, connection_uri_env, free_port, wait_for_port

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
WORKERS = ("worker-a", "worker-b")
#: Users of the simple auth manager, by role (``[core] simple_auth_manager_users``).
USERS = {"admin": "admin", "op": "op", "user": "user", "viewer": "viewer"}
S3_CONN_ID = "byo_e2e_s3"
LEDGER_CONN_ID = "byo_ledger"
#: The flows factory of the flow editor's spec folder (``Deployment.spec_folder``).
EDITOR_FACTORY = (
    "byo_editor/byo_editor_flows.py",
    "from pathlib import Path\n\nfrom airflow_byo.specs.factory import build_dags\n\n"
    'globals().update(build_dags(Path(__file__).parent / "flows"))\n',
)


class Api:
    """A small client for ``/api/v2`` with a JWT of one user; errors carry the response body."""

    def __init__(self, base_url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=30)

    def request(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code not in expect:
            raise DeploymentError(f"{method} {path} answered {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("PATCH", path, json=body, **kwargs)

    def close(self) -> None:
        self.http.close()


class Deployment:
    """
    A running deployment and the handful of operations the end-to-end tests need.

    Start with :meth:`start` (or the ``deployment`` fixture); :meth:`close` stops everything.
    """

    def __init__(
        self,
        root: Path,
        *,
        extra_env: dict[str, str] | None = None,
        executor: str = "CeleryExecutor",
        s3: bool = True,
    ) -> None:
        """
        :param extra_env: environment variables of every process (e.g. ``AIRFLOW__...`` settings).
        :param executor: ``CeleryExecutor`` (Redis broker, two workers) or ``LocalExecutor`` (the
            scheduler runs the tasks; no Redis, no workers).
        :param s3: start the moto S3 server and define its connection.
        """
        if executor not in ("CeleryExecutor", "LocalExecutor"):
            raise ValueError(f"executor must be CeleryExecutor or LocalExecutor, got {executor!r}")
        self.root = root
        self.executor = executor
        self.with_s3 = s3
        self.dags_folder = root / "dags"
        #: The flow editor's spec folder ([byo] spec_folder; EDITOR_FACTORY reads it) and the folder
        #: flows made on the page may use locally ([byo] editor_local_roots).
        self.spec_folder = self.dags_folder / "byo_editor" / "flows"
        self.editor_data = root / "editor_data"
        self.task_logs = root / "task-logs"
        self.logs = root / "logs"
        for folder in (
            self.dags_folder,
            self.task_logs,
            self.logs,
            root / "homes",
            root / "staging",
            self.spec_folder,
            self.editor_data,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        self.extra_env = dict(extra_env or {})
        run_id = uuid.uuid4().hex[:10]
        self.metadata_db = f"byo_e2e_meta_{run_id}"
        self.ledger_db = f"byo_e2e_ledger_{run_id}"
        self.ledger_url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.ledger_db}"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.passwords = {user: f"{user}-{secrets.token_hex(6)}" for user in USERS}
        self.redis_db: int | None = None
        self.s3: S3Server | None = None
        self.s3_conn_id = S3_CONN_ID
        self.ledger_conn_id = LEDGER_CONN_ID
        self.components: dict[str, Component] = {}
        self._databases: list[str] = []
        self._clients: dict[str, Api] = {}
        self._ledger_engine: Any = None
        self.seconds_to_start: float | None = None
        #: Durations tests want reported (printed in pytest's terminal summary).
        self.timings: dict[str, float] = {}
        #: CPU seconds used by each component when the deployment was closed.
        self.cpu_seconds: dict[str, float] = {}

    # -- start and stop ---------------------------------------------------------------------------

    def start(self) -> Deployment:
        began = time.monotonic()
        self._create_databases()
        if self.celery:
            self.redis_db = claim_redis_db()
        if self.with_s3:
            self.s3 = S3Server(self.root)
        (self.root / "passwords.json").write_text(json.dumps(self.passwords))
        self.write_dag_file(EDITOR_FACTORY[0], EDITOR_FACTORY[1])
        migrate = self._component("db-migrate", [AIRFLOW, "db", "migrate"])
        migrate.start()
        assert migrate.process is not None
        try:
            code = migrate.process.wait(timeout=300)
        finally:
            migrate.kill()  # reaps it; kills it only if the wait timed out
        if code != 0:
            raise DeploymentError(f"airflow db migrate failed:\n{migrate.tail(60)}")
        commands = {
            "api-server": [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port)],
            "scheduler": [AIRFLOW, "scheduler", "--skip-serve-logs"],
            "dag-processor": [AIRFLOW, "dag-processor"],
            "triggerer": [AIRFLOW, "triggerer", "--skip-serve-logs"],
        }
        for name, argv in commands.items():
            self.components[name] = self._component(name, argv)
            self.components[name].start()
        for name in self.workers:
            self.start_worker(name, wait=False)
        wait_for_port(self.api_port, self._process("api-server"), "airflow api-server", timeout=120)
        self.wait_until(self._all_healthy, timeout=120, what="scheduler, dag-processor and triggerer healthy")
        for name in self.workers:
            self.wait_for_worker(name)
        self.seconds_to_start = time.monotonic() - began
        return self

    @property
    def celery(self) -> bool:
        return self.executor == "CeleryExecutor"

    @property
    def workers(self) -> tuple[str, ...]:
        """Names of the Celery workers (none with the LocalExecutor)."""
        return WORKERS if self.celery else ()

    def close(self) -> None:
        """Stop every process, drop both databases, flush the Redis database; never raises."""
        for client in self._clients.values():
            client.close()
        # Workers first (they hold task processes), then the rest, all in one grace period.
        order = [*WORKERS, "scheduler", "triggerer", "dag-processor", "api-server"]
        components = [self.components[n] for n in order if n in self.components]
        self.cpu_seconds = {c.name: c.cpu_seconds() for c in components if c.alive}
        trees = {c.name: c.terminate() for c in components}
        deadline = time.monotonic() + 15
        for component in components:
            if component.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for component in components:
            for pid in trees[component.name]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            component._reap()
        with contextlib.suppress(Exception):
            if self._ledger_engine is not None:
                self._ledger_engine.dispose()
        with contextlib.suppress(Exception):
            if self.s3 is not None:
                self.s3.stop()
        with contextlib.suppress(Exception):
            if self.redis_db is not None:
                redis_db(self.redis_db).flushdb()
        self._drop_databases()

    def _component(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Component:
        home = self.root / "homes" / name
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        environment = self._base_env() | {"AIRFLOW_HOME": str(home), "TMPDIR": str(home / "tmp")}
        return Component(name, argv, environment | (env or {}), self.logs / f"{name}.log")

    def _base_env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        keep = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BYO_"))}
        meta = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.metadata_db}"
        if not hasattr(self, "_fernet"):
            self._fernet = Fernet.generate_key().decode()
            self._jwt_secret = secrets.token_urlsafe(32)
        config = {
            "CORE__EXECUTOR": self.executor,
            "CORE__DAGS_FOLDER": str(self.dags_folder),
            "CORE__LOAD_EXAMPLES": "False",
            "CORE__UNIT_TEST_MODE": "False",
            "CORE__FERNET_KEY": self._fernet,
            "CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
            "CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.root / "passwords.json"),
            "CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "DATABASE__SQL_ALCHEMY_CONN": meta,
            "API__HOST": "127.0.0.1",
            "API__PORT": str(self.api_port),
            "API__BASE_URL": self.api_url,
            "API__WORKERS": "1",
            "API_AUTH__JWT_SECRET": self._jwt_secret,
            # New and changed DAG files are parsed within seconds (defaults: 300 s / 30 s).
            "DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
            "DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "DAG_PROCESSOR__STALE_DAG_THRESHOLD": "10",
            # A SIGKILLed worker's task is declared dead after 15 s instead of 300 s (heartbeats every 2 s).
            "SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
            "SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
            "LOGGING__BASE_LOG_FOLDER": str(self.task_logs),
            "BYO__LEDGER_CONN_ID": LEDGER_CONN_ID,
            "BYO__SPEC_FOLDER": str(self.spec_folder),
            "BYO__EDITOR_LOCAL_ROOTS": str(self.editor_data),
        }
        if self.celery:
            config |= {
                "CELERY__BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/{self.redis_db}",
                "CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://postgres@127.0.0.1:5432/{self.metadata_db}",
                "CELERY__WORKER_CONCURRENCY": "1",
                "CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "7200",
            }
        env = keep | {f"AIRFLOW__{key}": value for key, value in config.items()}
        ledger = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres"}
        env.update([connection_uri_env(LEDGER_CONN_ID, ledger | {"schema": self.ledger_db})])
        if self.s3 is not None:
            env.update([connection_uri_env(S3_CONN_ID, self.s3.connection())])
        # uv (flow environments) and this checkout (tests.e2e.hostname) for every process.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env | self.extra_env

    def _create_databases(self) -> None:
        with pg_admin() as cursor:
            for name in (self.metadata_db, self.ledger_db):
                cursor.execute(f'CREATE DATABASE "{name}"')
                self._databases.append(name)

    def _drop_databases(self) -> None:
        with contextlib.suppress(Exception), pg_admin() as cursor:
            for name in self._databases:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _process(self, name: str) -> subprocess.Popen[bytes]:
        process = self.components[name].process
        assert process is not None
        return process

    def _all_healthy(self) -> bool:
        self._check_alive()
        try:
            health = httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(part) or {}).get("status") == "healthy" for part in parts)

    def _check_alive(self) -> None:
        dead = [c.name for c in self.components.values() if c.process and not c.alive and not c.killed]
        if dead:
            raise DeploymentError(f"{', '.join(dead)} exited\n{self.diagnostics()}")

    # -- workers ----------------------------------------------------------------------------------

    def start_worker(self, name: str, *, wait: bool = True) -> Component:
        """Start (or restart, with the same home and venv cache) the Celery worker ``name``."""
        home = self.root / "homes" / name
        worker_env = {
            "BYO_E2E_HOSTNAME": name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.e2e.hostname.hostname",
            "AIRFLOW__BYO__VENV_CACHE_PATH": str(home / "venvs"),
        }
        argv = [AIRFLOW, "celery", "worker", "--concurrency", "1", "--celery-hostname", f"{name}@%h"]
        argv += ["--skip-serve-logs", "--without-mingle", "--without-gossip"]
        component = self._component(name, argv, worker_env)
        self.components[name] = component
        component.start()
        if wait:
            self.wait_for_worker(name)
        return component

    def wait_for_worker(self, name: str, timeout: float = 120) -> None:
        component = self.components[name]

        def ready() -> bool:
            if not component.alive:
                raise DeploymentError(f"worker {name} exited\n{component.tail(80)}")
            with open(component.log_path, "rb") as handle:
                handle.seek(component.start_offset)
                return b" ready." in handle.read()

        self.wait_until(ready, timeout=timeout, what=f"celery worker {name} ready")

    def restart(self, name: str, env: dict[str, str]) -> None:
        """Stop component ``name`` (e.g. ``scheduler``), start it again with ``env`` added to its env."""
        old = self.components[name]
        tree = old.terminate()
        if old.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                old.process.wait(timeout=15)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        old._reap()
        self.components[name] = self._component(name, old.argv, env)
        self.components[name].start()
        self.wait_until(self._all_healthy, timeout=120, what=f"{name} restarted and healthy")

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL worker ``name`` and every process under it (its task, the byo child) at once."""
        return self.components[name].kill()

    # -- REST API ---------------------------------------------------------------------------------

    def token(self, user: str = "admin") -> str:
        """A JWT for ``user`` (admin, op, user or viewer) from the simple auth manager."""
        response = httpx.post(
            f"{self.api_url}/auth/token",
            json={"username": user, "password": self.passwords[user]},
            timeout=30,
        )
        if response.status_code != 201:
            raise DeploymentError(f"POST /auth/token for {user}: {response.status_code} {response.text}")
        return str(response.json()["access_token"])

    def client(self, user: str | None = "admin") -> Api:
        """A client for the api-server authenticated as ``user`` (``None``: anonymous)."""
        key = user or ""
        if key not in self._clients:
            self._clients[key] = Api(self.api_url, self.token(user) if user else None)
        return self._clients[key]

    @property
    def api(self) -> Api:
        """Client for ``/api/v2`` as the admin user (paths start with ``/api/v2``)."""
        return self.client("admin")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        response = self.api.http.get(f"/api/v2/dags/{dag_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def wait_for_dag(self, dag_id: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id`` (listed, not stale); returns the DAG."""

        def parsed() -> dict[str, Any] | None:
            dag = self.dag(dag_id)
            return dag if dag and not dag.get("is_stale") else None

        return self.wait_until(parsed, timeout=timeout, what=f"DAG {dag_id} parsed")

    def import_errors(self) -> list[dict[str, Any]]:
        """``GET /api/v2/importErrors``: ``filename``, ``stack_trace``, ``bundle_name``, ..."""
        return list(self.api.get("/api/v2/importErrors", params={"limit": 1000})["import_errors"])

    def unpause(self, dag_id: str) -> None:
        self.api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self.api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": True})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a run now; returns its ``dag_run_id``."""
        run = self.api.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return str(run["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def wait_for_run(
        self, dag_id: str, run_id: str, *, timeout: float = 180, expect: str | None = "success"
    ) -> dict[str, Any]:
        """Wait until the run has finished; with ``expect``, fail (with logs) on another end state."""

        def finished() -> dict[str, Any] | None:
            self._check_alive()
            run = self.dag_run(dag_id, run_id)
            return run if run["state"] in ("success", "failed") else None

        run = self.wait_until(
            finished, timeout=timeout, what=f"run {dag_id}/{run_id} finished", dag_id=dag_id, run_id=run_id
        )
        if expect is not None and run["state"] != expect:
            raise DeploymentError(
                f"run {dag_id}/{run_id} ended {run['state']}, expected {expect}\n"
                + self.diagnostics(dag_id, run_id)
            )
        return run

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Task instances of a run, mapped ones one per ``map_index``."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self.api.get(path, params={"limit": 1000})["task_instances"])

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of one task instance (``try_number``, ``state``, ``hostname``, ...)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries"
        return list(self.api.get(path)["task_instances"])

    def hostnames(self, dag_id: str, run_id: str, task_id: str | None = None) -> dict[tuple[str, int], str]:
        """``(task_id, map_index) -> hostname`` of the worker that ran the last try of each task."""
        return {
            (ti["task_id"], ti["map_index"]): ti["hostname"]
            for ti in self.task_instances(dag_id, run_id)
            if task_id in (None, ti["task_id"])
        }

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1, key: str = "return_value"
    ) -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.api.get(path, params={"map_index": map_index})["value"]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1
    ) -> str:
        """The task's log so far (JSON lines, written live by the worker to the shared log folder)."""
        folder = self.task_logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder /= f"map_index={map_index}"
        path = folder / f"attempt={try_number}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def add_connection(self, conn_id: str, connection: dict[str, Any]) -> None:
        """Store a connection in the metadata DB (seen by every process, unlike ``AIRFLOW_CONN_*``)."""
        body = {"connection_id": conn_id, **connection}
        if isinstance(body.get("extra"), dict):
            body["extra"] = json.dumps(body["extra"])
        self.api.post("/api/v2/connections", body, expect=(201,))

    # -- DAG files --------------------------------------------------------------------------------

    def write_dag_file(self, name: str, text: str | bytes) -> Path:
        """Write ``name`` into the DAGs folder atomically (never seen half-written by the parser)."""
        target = self.dags_folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = self.root / "staging" / f"{uuid.uuid4().hex}-{Path(name).name}"
        staged.write_bytes(text.encode() if isinstance(text, str) else text)
        os.replace(staged, target)
        return target

    def reparse(self, name: str) -> None:
        """Have the dag-processor parse ``name`` again now (a changed mtime skips its interval)."""
        os.utime(self.dags_folder / name)

    def remove_dag_file(self, name: str) -> None:
        (self.dags_folder / name).unlink(missing_ok=True)

    # -- the ledger -------------------------------------------------------------------------------

    def ledger_rows(self, flow_id: str) -> list[dict[str, Any]]:
        """Rows of the ledger's ``byo_files`` table for ``flow_id`` (``path``, ``state``, ...)."""
        import sqlalchemy

        if self._ledger_engine is None:
            self._ledger_engine = sqlalchemy.create_engine(
                self.ledger_url, poolclass=sqlalchemy.pool.NullPool
            )
        query = sqlalchemy.text("SELECT * FROM byo_files WHERE flow_id = :flow_id ORDER BY path")
        try:
            with self._ledger_engine.connect() as connection:
                return [dict(row._mapping) for row in connection.execute(query, {"flow_id": flow_id})]
        except sqlalchemy.exc.ProgrammingError:  # no flow has created the tables yet
            return []

    def ledger_events(self, flow_id: str, event: str) -> Counter[str]:
        """How many ``event`` entries (``claimed``, ``done``, ...) each path has in ``byo_events``."""
        import sqlalchemy

        self.ledger_rows(flow_id)  # creates the engine
        query = sqlalchemy.text("SELECT path FROM byo_events WHERE flow_id = :flow_id AND event = :event")
        with self._ledger_engine.connect() as connection:
            return Counter(
                row.path for row in connection.execute(query, {"flow_id": flow_id, "event": event})
            )

    # -- waiting and diagnostics ------------------------------------------------------------------

    def wait_until(
        self,
        predicate: Callable[[], T | None],
        *,
        timeout: float,
        what: str,
        interval: float = 0.5,
        dag_id: str | None = None,
        run_id: str | None = None,
    ) -> T:
        """Poll ``predicate`` until it returns something truthy; on timeout raise with log tails."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"timed out after {timeout:.0f}s waiting for {what}\n" + self.diagnostics(dag_id, run_id)
                )
            time.sleep(interval)

    def diagnostics(self, dag_id: str | None = None, run_id: str | None = None, lines: int = 40) -> str:
        """Tails of every process log, and of the task logs of ``dag_id``/``run_id`` when given."""
        parts = [f"deployment at {self.root} (api {self.api_url})"]
        for component in self.components.values():
            state = (
                "running" if component.alive else f"exited {component.process and component.process.poll()}"
            )
            parts.append(f"----- {component.name} ({state}), {component.log_path}\n{component.tail(lines)}")
        if dag_id:
            pattern = f"dag_id={dag_id}/run_id={run_id}/**/*.log" if run_id else f"dag_id={dag_id}/**/*.log"
            for path in sorted(self.task_logs.glob(pattern)):
                parts.append(f"----- task log {path.relative_to(self.task_logs)}\n{tail(path, lines)}")
        return "\n".join(parts)
