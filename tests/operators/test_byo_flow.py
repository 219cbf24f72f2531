"""ByoFlowOperator: argument checks at DAG-parse time, execution, summary on failure, test mode."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import (
    ByoConfigError,
    ByoFilesFailedError,
    ByoPackageError,
    ByoProcessorError,
    ByoStorageError,
)
from airflow_byo.operators.byo_flow import ByoFlowOperator
from tests.conftest import UPPER, context, tracked_flow


@pytest.fixture
def source(tmp_path: Path) -> Path:
    directory = tmp_path / "in"
    (directory / "nested").mkdir(parents=True)
    (directory / "a.txt").write_text("alpha")
    (directory / "b.csv").write_text("beta")
    (directory / "nested" / "c.txt").write_text("gamma")
    return directory


def operator(source: Path, destination: Path, **kwargs: Any) -> ByoFlowOperator:
    kwargs.setdefault("processor", UPPER)
    kwargs.setdefault("python_interpreter", sys.executable)
    kwargs.setdefault("runtime_config", {"job_config": {"output_format": "text"}})
    kwargs.setdefault("flow_id", f"test-{uuid.uuid4().hex}")  # a fresh ledger history per test
    return ByoFlowOperator(task_id="flow", source=str(source), destination=str(destination), **kwargs)


def test_runs_the_processor_over_filtered_files_and_returns_the_summary(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = operator(source, out, include=["*.txt"], exclude=["nested/*"]).execute(context())
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert (out / "a.txt").read_text() == "ALPHA"
    assert result["files_seen"] == 1
    assert result["files_processed"] == 1
    json.dumps(result)


def test_recursive_false_lists_only_the_top_directory(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = operator(source, out, include="*.txt", recursive=False, track_files=False).execute(context())
    assert result["files_seen"] == 1
    result = operator(source, out, include="*.txt", track_files=False).execute(context())
    assert result["files_seen"] == 2


def test_failed_files_fail_the_task_but_the_summary_reaches_xcom(source: Path, tmp_path: Path) -> None:
    code = "def process(file, ctx):\n    if file.name == 'b.csv':\n        raise KeyError('price')\n"
    ctx = context()
    with pytest.raises(ByoFilesFailedError, match=r"1 of 3 file\(s\) failed: .*b\.csv") as raised:
        operator(source, tmp_path / "out", processor=code).execute(ctx)
    assert "the XCom holds the run summary" in str(raised.value)
    summary = ctx["ti"].xcom["return_value"]
    assert summary["files_failed"] == 1
    assert summary["files_processed"] == 2
    [failed] = [f for f in summary["files"] if f["status"] == "failed"]
    assert failed["error"] == "KeyError: 'price'"


def test_empty_source_succeeds_without_building_an_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow_byo.environment

    def no_build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no environment is needed when there is nothing to process")

    monkeypatch.setattr(airflow_byo.environment, "ensure_environment", no_build)
    (tmp_path / "in").mkdir()
    result = ByoFlowOperator(
        task_id="flow", source=str(tmp_path / "in"), destination=str(tmp_path / "out"), processor=UPPER
    ).execute(context())
    assert result["files_seen"] == 0


def test_missing_source_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(ByoStorageError, match=r"source '.*/nowhere' does not exist: create the directory"):
        operator(tmp_path / "nowhere", tmp_path / "out").execute(context())


def test_test_mode_previews_one_file_and_writes_nothing(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = operator(source, out).execute(context(test_file=str(source / "a.txt")))
    assert result["test_mode"] is True
    [preview] = result["preview"]
    shown = {k: preview[k] for k in ("name", "size", "records", "lines", "truncated", "format", "columns")}
    assert shown == {
        "name": "a.txt",
        "size": 5,
        "records": None,
        "lines": ["ALPHA"],
        "truncated": False,
        "format": "text",  # plain text: lines, no table (tests/runner/test_preview_formats.py)
        "columns": [],
    }
    assert not out.exists()


def test_test_mode_failure_is_reported_with_the_error(source: Path, tmp_path: Path) -> None:
    code = "def process(file, ctx):\n    raise ValueError('bad header')\n"
    with pytest.raises(ByoFilesFailedError, match=r"test run failed on .*a\.txt: ValueError: bad header"):
        operator(source, tmp_path / "out", processor=code).execute(context(test_file=str(source / "a.txt")))
    assert not (tmp_path / "out").exists()


def test_test_mode_with_a_missing_sample_file(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ByoStorageError, match=r"file '.*/missing\.csv' does not exist"):
        operator(source, tmp_path / "out").execute(context(test_file=str(source / "missing.csv")))


# -- bad input is caught when the DAG file is parsed ------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"packages": "pandas==2.2.2,--index-url=http://evil"},
            ByoPackageError,
            "entry '--index-url=http://evil'",
        ),
        ({"packages": "p1=1.0.1"}, ByoPackageError, "Did you mean 'p1==1.0.1'"),
        ({"runtime_config": '{"job_config": {"timeout_seconds": 5,}}'}, ByoConfigError, "line 1, column 38"),
        (
            {"runtime_config": {"job_config": {"timeout": 5}}},
            ByoConfigError,
            "did you mean 'timeout_seconds'",
        ),
        (
            {"runtime_config": {"job_config": {"timeout_seconds": "soon"}}},
            ByoConfigError,
            "job_config.timeout_seconds: Input should be a valid number",
        ),
        (
            {"processor": "def process(file, ctx)\n    pass\n"},
            ByoProcessorError,
            "syntax error .*\\(line 1\\)",
        ),
        ({"processor": "def handle(file, ctx):\n    pass\n"}, ByoProcessorError, "functions defined: handle"),
        (
            {"processor": "def process(file):\n    pass\n"},
            ByoProcessorError,
            "cannot be called as process\\(file, ctx\\)",
        ),
        (
            {"processor": UPPER, "runtime_config": {"custom_code": {"kwargs": {"limit": 3}}}},
            ByoProcessorError,
            "unexpected keyword argument 'limit'",
        ),
        (
            {"packages": "humanize==4.11.0", "python_interpreter": "/usr/bin/python3"},
            ByoConfigError,
            "packages cannot be combined with python_interpreter",
        ),
    ],
)
def test_bad_arguments_fail_at_parse_time(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    kwargs.setdefault("python_interpreter", None)
    with pytest.raises(error, match=message):
        operator(tmp_path / "in", tmp_path / "out", **kwargs)


def test_templated_config_is_validated_at_run_time(source: Path, tmp_path: Path) -> None:
    task = operator(
        source, tmp_path / "out", runtime_config='{"job_config": {"timeout_seconds": "{{ params.t }}"}}'
    )
    task.runtime_config = '{"job_config": {"timeout_secs": 5}}'  # as if rendered from a bad template
    with pytest.raises(ByoConfigError, match=r"job_config\.timeout_secs: unknown key"):
        task.execute(context())
    assert not (tmp_path / "out").exists()


def test_bad_globs_are_named(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ByoConfigError, match="include must be a glob or a list of globs"):
        operator(source, tmp_path / "out", include=[""]).execute(context())


def test_flow_rejects_a_bad_files_pointer(source: Path, ledger_conn: str) -> None:
    with pytest.raises(
        ByoConfigError, match=r"files must be a sensor's or planner's XCom like \{'snapshot': '<id>'\}"
    ):
        tracked_flow(source, ledger_conn, files={"count": 3}).execute(context())


# -- files held by other runs (issue 13 point 4) ----------------------------------------------------


def held_elsewhere(task: ByoFlowOperator, names: list[str], lease: float = 120, **key: Any) -> Any:
    """A run on another machine claims ``names`` of the flow's source (recorded as it would be)."""
    from sqlalchemy import insert

    from airflow_byo.ledger.runs import RunIdentity
    from airflow_byo.ledger.schema import runs

    run = RunIdentity(
        token="b" * 32,
        flow_id=task.resolved_flow_id,
        host="worker-7",
        process_scope="worker-7/boot/pidns:1",
        pid=4242,
        started=1.7e9,
        **key,
    )
    new_files = task.new_files(task.resolved_flow_id)
    assert new_files.ledger is not None
    with new_files.ledger.engine.begin() as connection:
        connection.execute(insert(runs).values(**run.__dict__))
    chosen = [f for f in new_files.find()[1] if f.relative_path in names]
    assert len(new_files.ledger.claim(chosen, run.token, lease)) == len(names)
    return new_files.ledger


def on_held(task: ByoFlowOperator, mode: str) -> ByoFlowOperator:
    task.runtime_config = {"job_config": {"output_format": "text", "on_held": mode}}
    return task


def test_files_held_by_a_live_run_are_reported_and_the_run_succeeds(source: Path, ledger_conn: str) -> None:
    task = tracked_flow(source, ledger_conn)
    held_elsewhere(task, ["a.txt"])
    result = task.execute(context())
    assert (result["files_processed"], result["files_claimed_elsewhere"], result["files_taken_over"]) == (
        1,
        1,
        0,
    )
    [holder] = result["claim_holders"]
    assert holder["run"] == "b" * 32
    assert holder["holder"].startswith(
        "run bbbbbbbb (host worker-7, pid 4242, not in an Airflow task, started "
    )
    assert holder["files"] == 1
    assert holder["until"] == result["claims_elsewhere_expire"]


def test_on_held_fail_fails_the_task_naming_holder_and_expiry(source: Path, ledger_conn: str) -> None:
    from airflow_byo.exceptions import ByoFilesHeldError

    task = on_held(tracked_flow(source, ledger_conn), "fail")
    held_elsewhere(task, ["a.txt"])
    ctx = context()
    with pytest.raises(ByoFilesHeldError) as raised:
        task.execute(ctx)
    summary = ctx["ti"].xcom["return_value"]
    until = summary["claims_elsewhere_expire"]
    assert str(raised.value) == (
        "1 file(s) of flow 'dag.flow' are held by 1 other run(s): run bbbbbbbb (host worker-7, pid 4242, "
        f"not in an Airflow task, started 2023-11-14T22:13:20+00:00): 1 file(s) until {until}; "
        f"job_config.on_held is 'fail'. The last claim expires at {until} unless its run renews it (it is "
        "alive then, and processes them); a run after that takes them over. Set job_config.on_held to "
        "'wait' to wait for them or 'succeed' to only report them; `airflow byo ledger status dag.flow` "
        "lists them"
    )
    assert summary["files_processed"] == 1  # the other files were processed first


def test_on_held_wait_processes_the_files_once_their_claims_expire(source: Path, ledger_conn: str) -> None:
    import time

    task = on_held(tracked_flow(source, ledger_conn), "wait")
    held_elsewhere(task, ["a.txt"], lease=1.5)
    started = time.monotonic()
    result = task.execute(context())
    assert time.monotonic() - started >= 1.0  # it waited for the claim to expire
    assert (result["files_processed"], result["files_claimed_elsewhere"]) == (2, 0)
    assert (source.parent / "out" / "a.txt").read_text() == "ALPHA"


def test_on_held_wait_gives_up_when_the_lease_it_saw_has_passed(source: Path, ledger_conn: str) -> None:
    import threading
    import time

    task = on_held(tracked_flow(source, ledger_conn), "wait")
    ledger = held_elsewhere(task, ["a.txt"], lease=1.5)
    stop = threading.Event()

    def renew() -> None:  # the holder is alive: it keeps renewing its claim
        while not stop.wait(0.3):
            ledger.renew("b" * 32, 1.5)

    keeper = threading.Thread(target=renew)
    keeper.start()
    try:
        started = time.monotonic()
        result = task.execute(context())
        waited = time.monotonic() - started
    finally:
        stop.set()
        keeper.join()
    assert 2.0 <= waited < 20, waited  # until the expiry it saw (+1 s), not for as long as it is renewed
    assert (result["files_processed"], result["files_claimed_elsewhere"]) == (1, 1)


def test_claims_of_a_task_instance_that_no_longer_runs_are_taken_over(
    source: Path, ledger_conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    asked: list[dict[str, Any]] = []

    def get_task_states(**kwargs: Any) -> dict[str, Any]:  # only the Task SDK call is faked
        asked.append(kwargs)
        return {"manual__1": {"flow": "failed"}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
    task = tracked_flow(source, ledger_conn)
    key = {"dag_id": "dag", "run_id": "manual__1", "task_id": "flow", "map_index": -1, "try_number": 1}
    ledger = held_elsewhere(task, ["a.txt"], **key)
    result = task.execute(context())
    assert asked == [{"dag_id": "dag", "map_index": -1, "task_ids": ["flow"], "run_ids": ["manual__1"]}]
    assert (result["files_processed"], result["files_claimed_elsewhere"], result["files_taken_over"]) == (
        2,
        0,
        1,
    )
    [taken] = result["claims_taken_over"]
    assert taken["run"] == "b" * 32
    assert taken["reason"] == "its task instance is failed, no longer running (Airflow task state)"
    assert "dag dag, run manual__1, task flow, try 1" in taken["holder"]
    assert [e["event"] for e in ledger.history("a.txt")][-3:] == ["taken_over", "claimed", "done"]


def test_a_retry_takes_over_the_claims_of_its_killed_try(source: Path, ledger_conn: str) -> None:
    from tests.conftest import FakeTaskInstance

    task = tracked_flow(source, ledger_conn)
    key = {"dag_id": "dag", "run_id": "manual__1", "task_id": "flow", "map_index": -1}
    held_elsewhere(task, ["a.txt"], **key, try_number=1)
    ti = FakeTaskInstance()
    for name, value in {**key, "try_number": 2}.items():
        setattr(ti, name, value)
    result = task.execute({"params": {}, "ti": ti})  # type: ignore[arg-type]
    assert (result["files_processed"], result["files_taken_over"]) == (2, 1)
    assert (
        result["claims_taken_over"][0]["reason"] == "it was try 1 of this task instance, which now runs try 2"
    )
