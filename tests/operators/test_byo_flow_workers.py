"""
ByoFlowOperator with several children per task (``job_config.workers``) and the ledger (SQLite
and PostgreSQL): every file once, side by side, failures quarantined, the next run takes nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.operators.byo_flow import ByoFlowOperator
from tests.conftest import context

#: Upper-cases each file, leaving a mark (pid, start, end) outside its outputs: unsandboxed only.
MARKING = """
import json, os, time
def process(file, ctx):
    started = time.time()
    time.sleep(0.1)
    if file.name.startswith("bad"):
        raise ValueError("cannot parse " + file.name)
    mark = {"file": file.name, "pid": os.getpid(), "start": started, "end": time.time()}
    with open(os.path.join(ctx.variables["marks"], file.name + "." + str(os.getpid())), "w") as handle:
        json.dump(mark, handle)
    return file.open().read().upper()
"""


@pytest.fixture
def unsandboxed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__SANDBOX", "off")  # the marks are written outside the outputs


def flow(tmp_path: Path, ledger_conn: str, **job: Any) -> ByoFlowOperator:
    (tmp_path / "marks").mkdir(exist_ok=True)
    return ByoFlowOperator(
        task_id="flow",
        flow_id="dag.workers",
        source=str(tmp_path / "in"),
        destination=str(tmp_path / "out"),
        processor=MARKING,
        python_interpreter=sys.executable,
        ledger_conn_id=ledger_conn,
        runtime_config={
            "marks": str(tmp_path / "marks"),
            "job_config": {"output_format": "text", "workers": 2, **job},
        },
    )


def inputs(tmp_path: Path, names: list[str]) -> None:
    (tmp_path / "in").mkdir()
    for name in names:
        (tmp_path / "in" / name).write_text(f"content of {name}")


@pytest.mark.usefixtures("unsandboxed")
def test_two_children_take_every_file_once_and_the_next_run_none(tmp_path: Path, ledger_conn: str) -> None:
    names = [f"f{i:02d}.txt" for i in range(16)]
    inputs(tmp_path, names)
    result = flow(tmp_path, ledger_conn).execute(context())
    assert (result["files_processed"], result["workers"], sum(result["files_per_worker"])) == (16, 2, 16)
    assert all(count > 0 for count in result["files_per_worker"])
    out = tmp_path / "out"
    assert {p.name: p.read_text() for p in out.iterdir()} == {n: f"CONTENT OF {n}".upper() for n in names}
    marks = [json.loads(p.read_text()) for p in (tmp_path / "marks").iterdir()]
    assert sorted(m["file"] for m in marks) == names  # once each
    assert len({m["pid"] for m in marks}) == 2
    again = flow(tmp_path, ledger_conn).execute(context())
    assert (again["files_seen"], again["files_processed"]) == (0, 0)


@pytest.mark.usefixtures("unsandboxed")
def test_a_bad_file_is_retried_then_quarantined_with_two_children(tmp_path: Path, ledger_conn: str) -> None:
    names = ["bad.txt", *(f"f{i}.txt" for i in range(6))]
    inputs(tmp_path, names)
    result = flow(tmp_path, ledger_conn, error_policy="quarantine", retries=1).execute(context())
    assert (result["files_processed"], result["files_quarantined"], result["files_failed"]) == (6, 1, 0)
    record = json.loads((tmp_path / "out" / "_quarantine" / "bad.txt.error.json").read_text())
    assert (record["attempts"], record["error"]) == (2, "cannot parse bad.txt")
    again = flow(tmp_path, ledger_conn, error_policy="quarantine").execute(context())
    assert again["files_processed"] == again["files_quarantined"] == 0  # quarantined stays out
