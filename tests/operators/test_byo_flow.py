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
    assert result["preview"] == [
        {"name": "a.txt", "size": 5, "records": None, "lines": ["ALPHA"], "truncated": False}
    ]
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
