"""
A test-mode preview decoded in the child (a Parquet/Arrow/Avro output's schema and first rows)
is checked like every other child message: bounded rows and columns of strings, one preview per
output that exists; anything else is a ProtocolViolation that fails the file, long cells are cut.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_byo.runner.child_messages import ProtocolViolation, checked_done
from airflow_byo.runner.output_handoff import OutputStaging
from airflow_byo.runner.preview import preview_file
from airflow_byo.runtime.protocol import PREVIEW_MAX_CELL_CHARS, output_path
from airflow_byo.storage import Location
from tests.conftest import inline_runner, make_files
from tests.runner.test_child_messages import HOSTILE


def preview(**fields: Any) -> dict[str, Any]:
    return {
        "output": 0,
        "format": "parquet",
        "library": "pyarrow 19.0.1",
        "columns": ["id", "name"],
        "types": ["int64", "string"],
        "rows": [["1", "a"], ["2", "b"]],
        "total_rows": 2,
        "error": "",
    } | fields


def done(*previews: Any) -> dict[str, Any]:
    return {
        "ev": "done",
        "seq": 0,
        "seconds": 0.1,
        "outputs": [{"name": "out.parquet", "size": 4, "records": None}],
        "insights": {},
        "counters": {},
        "previews": list(previews),
    }


def test_a_valid_preview_reaches_its_output(tmp_path: Path) -> None:
    message, previews = checked_done(done(preview()))
    assert previews == {0: preview()}
    assert message["previews"] == [preview()]
    staging = OutputStaging(str(tmp_path))
    prefix = f"{staging.new_drop()}/000000"
    Path(output_path(prefix, 0)).write_bytes(b"PAR1")
    [output] = staging.take(prefix, message["outputs"], previews)
    assert output.decoded == preview()


def test_no_previews_field_means_no_preview() -> None:
    message = done()
    del message["previews"]
    assert checked_done(message)[1] == {}


def test_long_cells_column_names_and_texts_are_cut() -> None:
    long = "x" * 100_000
    _, previews = checked_done(
        done(preview(columns=[long, "b"], rows=[[long, "y"]], library=long, error=long))
    )
    decoded = previews[0]
    assert decoded["columns"][0] == "x" * (PREVIEW_MAX_CELL_CHARS - 1) + "…"
    assert decoded["rows"] == [["x" * (PREVIEW_MAX_CELL_CHARS - 1) + "…", "y"]]
    assert (len(decoded["library"]), len(decoded["error"])) == (100, 1000)


@pytest.mark.parametrize(
    ("previews", "message"),
    [
        ("nope", "field 'previews' must be a list of at most one preview per output (1)"),
        ([preview(), preview()], "field 'previews' must be a list of at most one preview per output (1)"),
        (["x"], "a preview is not an object"),
        ([preview(output=3)], "preview of output #3: no such output, or a second preview"),
        ([preview(output="0")], "field 'output' must be int, got str"),
        ([preview(format="exe")], "preview of output 'out.parquet': format 'exe' is not one of"),
        ([preview(rows=[["1", "a"]] * 1001)], "preview of output 'out.parquet': 1001 rows; at most 1000"),
        ([preview(columns=["c"] * 101, types=["t"] * 101)], "preview of output 'out.parquet': 101 columns"),
        ([preview(rows=[[1, "a"]])], "preview of output 'out.parquet': row must be a list of strings"),
        ([preview(rows=[["1"]])], "preview of output 'out.parquet': a row does not have one cell per column"),
        ([preview(types=["int64"])], "preview of output 'out.parquet': 1 types for 2 columns"),
        ([preview(total_rows=-1)], "preview of output 'out.parquet': total_rows must be a count or null"),
        ([preview(library=None)], "field 'library' must be str, got NoneType"),
    ],
)
def test_malformed_or_oversized_previews_are_violations(previews: Any, message: str) -> None:
    body = done()
    body["previews"] = previews
    with pytest.raises(ProtocolViolation) as raised:
        checked_done(body)
    assert str(raised.value).startswith(message)


def test_a_hostile_child_sending_an_oversized_preview_fails_the_test_with_a_clear_error(
    tmp_path: Path,
) -> None:
    attack = (
        'ctx.write("out.parquet", b"PAR1"); '
        'forge(json.dumps({"ev": "done", "seq": 0, "seconds": 0.1, "insights": {}, "counters": {}, '
        '"outputs": [{"name": "out.parquet", "size": 4, "records": None}], '
        '"previews": [{"output": 0, "format": "parquet", "library": "x", "columns": ["a"], '
        '"types": ["t"], "rows": [["r"]] * 5000, "total_rows": None, "error": ""}]}))'
    )
    make_files(tmp_path / "in", {"evil.txt": ""})
    runner = inline_runner(
        HOSTILE.replace("ATTACK", attack),
        {"secret": "", "outside": "", "job_config": {"timeout_seconds": 20}},
    )
    location = Location(str(tmp_path / "in"))
    summary, previews = preview_file(runner, location, location.file_info("evil.txt"))
    assert previews == []
    [failed] = summary.failed
    assert failed.error_type == "ProtocolError"
    assert failed.error == (
        "the processor sent an invalid message: preview of output 'out.parquet': 5000 rows; at most 1000"
    )
