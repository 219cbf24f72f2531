"""
Lineage (airflow_byo.lineage): the destination's Asset URI, the compact Asset event ``extra`` and
the OpenLineage datasets -- processed inputs and the URLs their outputs were published at.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from airflow_byo.lineage import MAX_LINEAGE_DATASETS, asset_uri, compact, lineage
from airflow_byo.operators.byo_flow import ByoFlowOperator
from airflow_byo.results import FileResult, RunSummary
from tests.conftest import UPPER, context


def test_asset_uri_of_local_paths_and_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert asset_uri("~/out") == f"file://{tmp_path}/out"
    assert asset_uri("out/by_day") == f"file://{tmp_path}/out/by_day"
    assert asset_uri("/data/out") == "file:///data/out"
    assert asset_uri("s3://bucket/out") == "s3://bucket/out"
    assert asset_uri("sftp://host/out") == "sftp://host/out"


def test_compact_drops_only_the_per_file_list() -> None:
    summary = RunSummary(source="/in", destination="/out")
    summary.tally.add(FileResult(url="/in/a", status="processed"), {"k": 1}, {"rows": 2})
    data = summary.as_dict()
    assert compact(data) == {key: value for key, value in data.items() if key != "files"}
    assert "files" not in compact(data)
    assert compact(data)["insights"] == {"k": 1}


def test_lineage_is_processed_files_and_their_published_outputs() -> None:
    summary = RunSummary(source="s3://bucket/in", destination="sftp://host/out")
    done = FileResult(url="s3://bucket/in/a.csv", status="processed")
    done.output_urls = ["sftp://host/out/a.jsonl", "sftp://host/out/a.txt"]
    done.outputs = ["a.jsonl", "a.txt"]
    failed = FileResult(url="s3://bucket/in/b.csv", status="failed", outputs=["b.jsonl"])
    quarantined = FileResult(url="s3://bucket/in/c.csv", status="quarantined")
    local = FileResult(url="/data/in/d.csv", status="processed", output_urls=["file:///data/out/d.jsonl"])
    for result in (done, failed, quarantined, local):
        summary.tally.add(result, {}, {})
    inputs, outputs = lineage(summary)
    assert inputs == [("s3://bucket", "in/a.csv"), ("file", "/data/in/d.csv")]
    assert outputs == [
        ("sftp://host", "/out/a.jsonl"),
        ("sftp://host", "/out/a.txt"),
        ("file", "/data/out/d.jsonl"),
    ]


def test_lineage_is_capped_on_each_side() -> None:
    summary = RunSummary(source="/in", destination="/out")
    for index in range(MAX_LINEAGE_DATASETS + 5):
        urls = [f"/out/{index}.a", f"/out/{index}.b"]
        summary.tally.add(FileResult(url=f"/in/{index}", status="processed", output_urls=urls), {}, {})
    inputs, outputs = lineage(summary)
    assert len(inputs) == MAX_LINEAGE_DATASETS
    assert len(outputs) == MAX_LINEAGE_DATASETS
    assert outputs[-1] == ("file", f"/out/{MAX_LINEAGE_DATASETS // 2 - 1}.b")


def test_openlineage_datasets_are_the_processed_inputs_and_their_outputs(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a")
    task = ByoFlowOperator(
        task_id="flow",
        flow_id=f"lineage-{uuid.uuid4().hex}",
        source=str(tmp_path / "in"),
        destination=str(tmp_path / "out"),
        processor=UPPER,
        python_interpreter=sys.executable,
        runtime_config={"job_config": {"output_format": "text"}},
    )
    task.execute(context())
    lineage = task.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(tmp_path / "in" / "a.txt"))]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", str(tmp_path / "out" / "a.txt"))]


def test_a_destination_under_home_is_declared_where_the_outputs_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a")
    task = ByoFlowOperator(
        task_id="flow",
        flow_id=f"lineage-{uuid.uuid4().hex}",
        source="~/in",
        destination="~/out",
        processor=UPPER,
        python_interpreter=sys.executable,
        track_files=False,
        runtime_config={"job_config": {"output_format": "text"}},
    )
    assert [outlet.uri for outlet in task.outlets] == [f"file://{tmp_path}/out"]
    result = task.execute(context())
    assert result["destination"] == str(tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_text() == "A"
    lineage = task.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(tmp_path / "in" / "a.txt"))]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", str(tmp_path / "out" / "a.txt"))]
