"""
The processor contract (airflow_byo.runtime.contract): output names, record writers, the context
and the input file.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.runtime.contract import (
    Context,
    InputFile,
    OutputError,
    safe_output_name,
    write_records,
)

# -- safe_output_name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("by_day/x.jsonl", "by_day/x.jsonl"),
        ("orders.jsonl", "orders.jsonl"),
        ("by_day/./2024-01-01.jsonl", "by_day/2024-01-01.jsonl"),
        ("./a.jsonl", "a.jsonl"),
        ("a//b.csv", "a/b.csv"),
        ("a..b/c...d", "a..b/c...d"),
        ("ünïcode/файл.txt", "ünïcode/файл.txt"),
    ],
)
def test_safe_names_are_normalised(name: str, expected: str) -> None:
    assert safe_output_name(name) == expected


@pytest.mark.parametrize("name", ["../../etc/x", "a/../../b", "..", "a/..", "a/../b"])
def test_parent_segments_are_rejected(name: str) -> None:
    with pytest.raises(OutputError) as raised:
        safe_output_name(name)
    assert str(raised.value) == (
        f"output name {name!r} leaves the destination ('..' is not allowed in output names)"
    )


@pytest.mark.parametrize("name", ["/abs", "/etc/passwd", "C:x", "c:/windows/x"])
def test_absolute_names_are_rejected(name: str) -> None:
    with pytest.raises(OutputError) as raised:
        safe_output_name(name)
    message = str(raised.value)
    assert message.startswith(f"output name {name!r} is absolute; use a name relative to the destination")
    assert "e.g. 'orders.jsonl' or 'by_day/2024-01-01.jsonl'" in message


@pytest.mark.parametrize(
    "name", ["bad\nname", "a\x00b", "tab\there", "esc\x1b[0m", "a\rb", "a\\..\\b", "C:\\\\x"]
)
def test_control_characters_and_backslashes_are_rejected(name: str) -> None:
    with pytest.raises(OutputError) as raised:
        safe_output_name(name)
    assert str(raised.value) == f"output name {name!r} contains a control character or a backslash"


@pytest.mark.parametrize("name", ["a\x7fb", "a\x85b", "a\x9bb"])
def test_del_and_c1_control_characters_are_rejected(name: str) -> None:
    with pytest.raises(OutputError, match="control character"):
        safe_output_name(name)


@pytest.mark.parametrize("name", ["", "   ", "\r\n", None, 3])
def test_empty_or_non_string_names_are_rejected(name: Any) -> None:
    with pytest.raises(OutputError) as raised:
        safe_output_name(name)
    assert str(raised.value) == f"output name must be a non-empty string, got {name!r}"


@pytest.mark.parametrize("name", [".", "./", "a/.."])
def test_names_that_are_no_file_are_rejected(name: str) -> None:
    with pytest.raises(
        OutputError, match=r"does not name a file inside the destination|leaves the destination"
    ):
        safe_output_name(name)


def test_output_error_is_a_value_error() -> None:
    assert issubclass(OutputError, ValueError)


# -- write_records --------------------------------------------------------------------------------


def test_jsonl_streams_one_record_per_line() -> None:
    stream = io.StringIO()
    count = write_records(({"n": n, "name": "é"} for n in range(3)), stream, "jsonl")
    assert count == 3
    assert stream.getvalue() == '{"n": 0, "name": "é"}\n{"n": 1, "name": "é"}\n{"n": 2, "name": "é"}\n'


def test_json_writes_an_array() -> None:
    stream = io.StringIO()
    assert write_records([{"a": 1}, [2, 3], "x"], stream, "json") == 3
    assert json.loads(stream.getvalue()) == [{"a": 1}, [2, 3], "x"]


def test_json_with_no_records_is_an_empty_array() -> None:
    stream = io.StringIO()
    assert write_records([], stream, "json") == 0
    assert json.loads(stream.getvalue()) == []


def test_csv_takes_the_header_from_the_first_record() -> None:
    stream = io.StringIO()
    assert write_records([{"id": 1, "name": "a,b"}, {"id": 2, "name": 'q"uote'}], stream, "csv") == 2
    rows = list(csv.reader(io.StringIO(stream.getvalue())))
    assert rows == [["id", "name"], ["1", "a,b"], ["2", 'q"uote']]


def test_csv_with_no_records_writes_nothing() -> None:
    stream = io.StringIO()
    assert write_records([], stream, "csv") == 0
    assert stream.getvalue() == ""


def test_csv_needs_dict_records() -> None:
    with pytest.raises(OutputError) as raised:
        write_records([{"a": 1}, [1, 2]], io.StringIO(), "csv")
    assert str(raised.value) == "output_format 'csv' needs records that are dicts, got list"


def test_csv_record_with_unknown_fields_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"fields not in fieldnames: 'extra'"):
        write_records([{"a": 1}, {"a": 2, "extra": 3}], io.StringIO(), "csv")


@pytest.mark.parametrize("output_format", ["text", "bytes", "xml"])
def test_formats_that_cannot_hold_records(output_format: str) -> None:
    with pytest.raises(OutputError) as raised:
        write_records([{"a": 1}], io.StringIO(), output_format)
    assert str(raised.value) == (
        f"records cannot be written with output_format {output_format!r}; "
        "use 'jsonl', 'json' or 'csv', or return bytes/str"
    )


def test_common_non_json_types_are_serialised() -> None:
    record = {
        "when": dt.datetime(2024, 1, 2, 3, 4, 5),
        "day": dt.date(2024, 1, 2),
        "amount": decimal.Decimal("1.10"),
        "id": uuid.UUID(int=1),
        "tags": {"b", "a"},
        "path": Path("/x/y"),
    }
    stream = io.StringIO()
    write_records([record], stream, "jsonl")
    assert json.loads(stream.getvalue()) == {
        "when": "2024-01-02T03:04:05",
        "day": "2024-01-02",
        "amount": "1.10",
        "id": "00000000-0000-0000-0000-000000000001",
        "tags": ["a", "b"],
        "path": "/x/y",
    }


# -- InputFile ------------------------------------------------------------------------------------


@pytest.fixture
def input_file(tmp_path: Path) -> InputFile:
    path = tmp_path / "staged"
    path.write_text("id,name\n1,é\n", encoding="utf-8")
    return InputFile(
        path=str(path),
        url="s3://bucket/in/2024/orders.v1.csv",
        name="orders.v1.csv",
        relative_path="2024/orders.v1.csv",
        size=path.stat().st_size,
    )


def test_input_file_attributes(input_file: InputFile) -> None:
    assert input_file.stem == "orders.v1"
    assert input_file.suffix == ".csv"
    assert input_file.relative_path == "2024/orders.v1.csv"
    assert repr(input_file) == f"InputFile(url='s3://bucket/in/2024/orders.v1.csv', size={input_file.size})"


def test_input_file_without_extension() -> None:
    plain = InputFile(path="/x", url="/data/README", name="README", relative_path="README", size=0)
    assert (plain.stem, plain.suffix) == ("README", "")


def test_input_file_opens_as_text_and_binary(input_file: InputFile) -> None:
    with input_file.open() as handle:
        assert handle.read() == "id,name\n1,é\n"
    with input_file.open("rb") as handle:
        assert handle.read() == "id,name\n1,é\n".encode()
    with input_file.open("r", encoding="latin-1") as handle:
        assert handle.read() != "id,name\n1,é\n"


@pytest.mark.parametrize("mode", ["w", "wb", "a", "r+", "x"])
def test_input_files_are_read_only(input_file: InputFile, mode: str) -> None:
    with pytest.raises(OutputError) as raised:
        input_file.open(mode)
    assert str(raised.value) == "input files are read-only; write outputs with ctx.output()"
    assert Path(input_file.path).read_text(encoding="utf-8") == "id,name\n1,é\n"


# -- Context --------------------------------------------------------------------------------------


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def ctx(tmp_path: Path, input_file: InputFile, events: list[dict[str, Any]]) -> Context:
    staging = tmp_path / "out"
    staging.mkdir()
    return Context(
        job_config={"output_format": "jsonl", "timeout_seconds": 60},
        variables={"country": "NL"},
        log=logging.getLogger("byo-test"),
        input_file=input_file,
        output_prefix=str(staging / "7"),
        emit=events.append,
    )


def test_context_exposes_config_variables_and_input(ctx: Context, input_file: InputFile) -> None:
    assert ctx.job_config["timeout_seconds"] == 60
    assert ctx.variables == {"country": "NL"}
    assert ctx.input is input_file
    assert ctx.insights == {}
    assert ctx.counters == {}


def test_outputs_are_staged_flat_and_reported(ctx: Context, tmp_path: Path) -> None:
    with ctx.output("by_day/2024-01-01.jsonl") as handle:
        handle.write('{"a": 1}\n')
    binary = ctx.output("raw/x.bin", "wb")
    binary.write(b"\x00\x01")  # left open: _finish_outputs closes it
    ctx.write("summary.txt", "héllo")
    ctx.write("blob.bin", b"12345")
    ctx.write("records.jsonl", [{"a": 1}, {"a": 2}])
    ctx.write("one.json", {"a": 1}, output_format="json")
    outputs = ctx._finish_outputs()
    assert binary.closed
    assert [spec.as_dict() for spec in outputs] == [
        {"name": "by_day/2024-01-01.jsonl", "size": 9, "records": None},
        {"name": "raw/x.bin", "size": 2, "records": None},
        {"name": "summary.txt", "size": len("héllo".encode()), "records": None},
        {"name": "blob.bin", "size": 5, "records": None},
        {"name": "records.jsonl", "size": 18, "records": 2},
        {"name": "one.json", "size": len('[\n{"a": 1}\n]\n'), "records": 1},
    ]
    staging = tmp_path / "out"
    assert [spec.local_path for spec in outputs] == [str(staging / f"7-{n:05d}") for n in range(6)]
    assert sorted(p.name for p in staging.iterdir()) == [f"7-{n:05d}" for n in range(6)]
    assert Path(outputs[2].local_path).read_text(encoding="utf-8") == "héllo"
    assert json.loads(Path(outputs[5].local_path).read_text()) == [{"a": 1}]


def test_write_uses_the_flow_output_format(ctx: Context) -> None:
    ctx.job_config["output_format"] = "csv"
    ctx.write("rows.csv", iter([{"a": 1}]))
    (spec,) = ctx._finish_outputs()
    assert Path(spec.local_path).read_bytes() == b"a\r\n1\r\n"
    assert spec.records == 1


@pytest.mark.parametrize("name", ["../../etc/x", "/abs", "a/../../b", "bad\nname"])
def test_outputs_cannot_leave_the_destination(ctx: Context, name: str, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"leaves the destination|is absolute|control character"):
        ctx.output(name)
    with pytest.raises(OutputError, match=r"leaves the destination|is absolute|control character"):
        ctx.write(name, b"x")
    assert list((tmp_path / "out").iterdir()) == []
    assert ctx._finish_outputs() == []


def test_an_output_is_written_once(ctx: Context) -> None:
    ctx.write("a/b.txt", "1")
    with pytest.raises(OutputError) as raised:
        ctx.write("a/./b.txt", "2")
    assert str(raised.value) == "output 'a/b.txt' was already written for this input file"


@pytest.mark.parametrize("mode", ["a", "r", "w+", "x"])
def test_output_modes(ctx: Context, mode: str) -> None:
    with pytest.raises(OutputError) as raised:
        ctx.output("x.txt", mode)
    assert str(raised.value) == f"ctx.output() mode must be 'w' or 'wb', got {mode!r}"


def test_insights_are_kept_by_key(ctx: Context) -> None:
    ctx.insight("rows", 10)
    ctx.insight("rows", 12)
    ctx.insight(3, {"nested": [1, 2]})
    assert ctx.insights == {"rows": 12, "3": {"nested": [1, 2]}}


def test_insight_that_cannot_be_serialised_fails_in_the_callers_frame(ctx: Context) -> None:
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        ctx.insight("loop", circular)
    with pytest.raises(TypeError, match="keys must be"):
        ctx.insight("keys", {(1, 2): "tuple key"})
    assert ctx.insights == {}


def test_counters_are_summed(ctx: Context) -> None:
    ctx.count("rows")
    ctx.count("rows", 4)
    ctx.count("bytes", 1.5)
    ctx.count(7)
    assert ctx.counters == {"rows": 5, "bytes": 1.5, "7": 1}


def test_notify_emits_a_json_safe_event(ctx: Context, events: list[dict[str, Any]]) -> None:
    ctx.notify("threshold exceeded", rows=12, when=dt.date(2024, 1, 2), tags={"b", "a"})
    ctx.notify(42, level="warning")
    assert events == [
        {
            "ev": "notify",
            "message": "threshold exceeded",
            "level": "info",
            "fields": {"rows": 12, "when": "2024-01-02", "tags": ["a", "b"]},
        },
        {"ev": "notify", "message": "42", "level": "warning", "fields": {}},
    ]
    json.dumps(events)
