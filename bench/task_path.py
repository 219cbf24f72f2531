"""
B1 through the path users run: ``airflow tasks test`` of a ``ByoFlowOperator`` with the ledger.

Each repetition is an ordinary ``airflow tasks test`` of a one-task DAG in its own process (the
Task SDK's task runner, Airflow's task logging at INFO, the flow's own pinned virtualenv, warm),
over B1's CSV files into a fresh destination, with a fresh ``flow_id`` (every file is new to the
ledger). The figure is the *in-task* time: ``execute`` from its first line to its return
(listing, ledger, environment check, children, publishing, settles, the summary), measured
inside the task by a subclass in the bench's DAG file and written to a file; Airflow's own
start-up (~9 s here, whatever the task does) is not part of it, nor is the first request to
the Task SDK's API, which ``airflow tasks test`` serves in-process and builds on first use
(~1.5 s of CPU that a deployment's running API server never charges a task). The baseline is B1's plain loop
in this process (read, transform, write a temp name, ``os.replace``), alternating with the
task runs.

Two ledgers: the default SQLite file under ``$AIRFLOW_HOME/byo``, and PostgreSQL (a fresh
database on 127.0.0.1:5432, dropped afterwards) through the ``byo_ledger`` connection; the
PostgreSQL rows are left out when no server answers there.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from bench.ledger_fill import pg_up
from bench.timing import Row, medians

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["run"]


PACKAGE = "humanize==4.11.0"  # one pinned package, as a real flow has

DAG = '''
"""B1's task: one ByoFlowOperator whose execute times itself (bench/task_path.py)."""
import json
import os
import time

import pendulum
from airflow.sdk import DAG, Variable

from airflow_byo.operators.byo_flow import ByoFlowOperator


class TimedByoFlowOperator(ByoFlowOperator):
    def execute(self, context):
        # `airflow tasks test` serves the Task SDK's API in this process and builds that app on
        # its first request (~1.5 s of CPU); a deployment's API server is up already. One
        # request before the clock starts, so the figure is the task's work alone.
        Variable.get("byo_bench_warm_up", default=None)
        started = time.perf_counter()
        summary = super().execute(context)
        seconds = time.perf_counter() - started
        with open(os.environ["BYO_BENCH_TIMING"], "w") as handle:
            json.dump({"seconds": seconds, "files_processed": summary["files_processed"]}, handle)
        return summary


with DAG("byo_bench_task_path", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False):
    TimedByoFlowOperator(
        task_id="flow",
        flow_id=os.environ.get("BYO_BENCH_FLOW_ID", "bench"),
        source=os.environ.get("BYO_BENCH_SOURCE", "/nonexistent"),
        destination=os.environ.get("BYO_BENCH_DESTINATION", "/nonexistent"),
        processor=%(processor)r,
        packages=[%(package)r],
        emit_asset_event=False,
    )
'''


@contextlib.contextmanager
def _pg_ledger() -> Iterator[str]:
    """A fresh PostgreSQL database for the ledger; its connection URI; dropped afterwards."""
    name = f"byo_bench_{uuid.uuid4().hex[:10]}"
    admin = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c"]
    subprocess.run([*admin, f"CREATE DATABASE {name}"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        subprocess.run([*admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)


class _TaskPath:
    """An ``AIRFLOW_HOME`` (migrated once, kept) with the bench DAG, and its ``airflow tasks test``."""

    def __init__(self, workdir: Path, processor: str) -> None:
        self.home = workdir / "task-path-home"
        self.dags = self.home / "dags"
        self.dags.mkdir(parents=True, exist_ok=True)
        (self.dags / "byo_bench_task_path.py").write_text(
            textwrap.dedent(DAG) % {"processor": processor, "package": PACKAGE}
        )
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # what a deployment logs
            "AIRFLOW__BYO__VENV_CACHE_PATH": str(workdir / "venvs"),
        }
        self.env.pop("AIRFLOW_VAR_PYTHON_VIRTUALENV_OPERATOR_CACHE_KEY", None)  # a task has its DB
        self.airflow = str(Path(sys.executable).parent / "airflow")
        if not (self.home / ".migrated").exists():
            subprocess.run([self.airflow, "db", "migrate"], env=self.env, check=True, capture_output=True)
            (self.home / ".migrated").touch()

    def task(self, source: Path, ledger: dict[str, str], expected: int) -> Callable[[Path], float]:
        """A repetition: one task run into a fresh destination; returns its in-task seconds."""

        def run(out: Path) -> float:
            timing = out / "timing.json"
            destination = out / "out"
            env = {
                **self.env,
                **ledger,
                "BYO_BENCH_FLOW_ID": f"bench-{uuid.uuid4().hex[:12]}",
                "BYO_BENCH_SOURCE": str(source),
                "BYO_BENCH_DESTINATION": str(destination),
                "BYO_BENCH_TIMING": str(timing),
            }
            command = [self.airflow, "tasks", "test", "byo_bench_task_path", "flow", "2026-01-01"]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0 or not timing.exists():
                raise RuntimeError(
                    f"B1 task path: airflow tasks test failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
                )
            measured = json.loads(timing.read_text())
            if measured["files_processed"] != expected:
                raise RuntimeError(
                    f"B1 task path: {measured['files_processed']} of {expected} files processed"
                )
            return float(measured["seconds"])

        return run


def run(
    workdir: Path, *, csv_source: Path, transform: str, loop: Callable[[Path], None], repeat: int
) -> list[Row]:
    """B1 rows for the SQLite ledger and, where a server answers, the PostgreSQL one."""
    path = _TaskPath(workdir, transform)
    files = len(os.listdir(csv_source))
    sqlite = {"AIRFLOW__BYO__LEDGER_CONN_ID": ""}  # the default: $AIRFLOW_HOME/byo/ledger.db
    medians(1, workdir, warm=path.task(csv_source, sqlite, files))  # builds the flow's environment
    ledgers = {"SQLite": sqlite}
    with contextlib.ExitStack() as stack:
        if pg_up():
            uri = stack.enter_context(_pg_ledger())
            ledgers["PostgreSQL"] = {
                "AIRFLOW_CONN_BYO_BENCH_LEDGER": uri,
                "AIRFLOW__BYO__LEDGER_CONN_ID": "byo_bench_ledger",
            }
        sides: dict[str, Callable[[Path], object]] = {"loop": loop}
        sides.update({name: path.task(csv_source, env, files) for name, env in ledgers.items()})
        times = medians(repeat, workdir, **sides)
    return [
        (
            f"B1 {files:,} CSV -> JSONL, `airflow tasks test` + {name} ledger: in-task time vs loop (s)",
            times[name],
            times["loop"],
            "<= 1.3x",
        )
        for name in ledgers
    ]
