"""
Previews a person can read (airflow_byo.runner.preview_formats and preview.output_preview): JSON
Lines, JSON and CSV outputs as a table of their first records, gzip/bz2 opened transparently,
other binary as size + hex head; and the text ``airflow byo test`` prints of them.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import json
import os
from pathlib import Path

import pytest

from airflow_byo.results import StagedOutput
from airflow_byo.runner.preview import format_previews, output_preview, preview_file
from airflow_byo.runner.preview_formats import read_head, render_table
from airflow_byo.storage import Location
from tests.conftest import inline_runner, make_files, staged_output


def staged(tmp_path: Path, name: str, data: bytes) -> StagedOutput:
    path = tmp_path / "000000-00000"
    path.write_bytes(data)
    return staged_output(path, name)


def test_json_lines_preview_as_a_table_of_the_first_records(tmp_path: Path) -> None:
    data = "".join(json.dumps({"id": i, "name": f"n{i}", "tags": [i]}) + "\n" for i in range(30))
    preview = output_preview(staged(tmp_path, "out.jsonl", data.encode()), 3)
    assert (preview.format, preview.columns) == ("jsonl", ["id", "name", "tags"])
    assert preview.rows == [["0", "n0", "[0]"], ["1", "n1", "[1]"], ["2", "n2", "[2]"]]
    assert preview.lines[0] == '{"id": 0, "name": "n0", "tags": [0]}'  # the raw lines stay
    assert preview.truncated


def test_records_with_different_keys_share_one_header(tmp_path: Path) -> None:
    data = b'{"a": 1}\n{"b": "x", "a": 2}\n'
    preview = output_preview(staged(tmp_path, "out.jsonl", data), 10)
    assert (preview.columns, preview.rows, preview.truncated) == (["a", "b"], [["1", ""], ["2", "x"]], False)


def test_a_json_array_cut_by_the_64_kb_head_still_previews_its_first_records(tmp_path: Path) -> None:
    records = [{"id": i, "text": "x" * 100} for i in range(2000)]  # ~230 KB
    preview = output_preview(staged(tmp_path, "out.json", json.dumps(records).encode()), 5)
    assert preview.format == "json"
    assert [row[0] for row in preview.rows] == ["0", "1", "2", "3", "4"]
    assert preview.truncated


def test_csv_previews_as_header_and_rows(tmp_path: Path) -> None:
    data = b'id,name\n1,a\n2,"b, c"\n3,d\n'
    preview = output_preview(staged(tmp_path, "out.csv", data), 2)
    assert (preview.format, preview.columns, preview.rows) == (
        "csv",
        ["id", "name"],
        [["1", "a"], ["2", "b, c"]],
    )
    assert preview.truncated


@pytest.mark.parametrize(("compress", "suffix"), [(gzip.compress, ".gz"), (bz2.compress, ".bz2")])
def test_compressed_csv_previews_as_a_table(tmp_path: Path, compress: object, suffix: str) -> None:
    data = compress(b"id,name\n1,a\n2,b\n")  # type: ignore[operator]
    preview = output_preview(staged(tmp_path, "out.csv" + suffix, data), 10)
    assert preview.compression == suffix.strip(".").replace("gz", "gzip")
    assert (preview.format, preview.columns, preview.rows) == (
        "csv",
        ["id", "name"],
        [["1", "a"], ["2", "b"]],
    )
    assert not preview.truncated


def test_a_decompression_bomb_reads_only_the_head(tmp_path: Path) -> None:
    bomb = gzip.compress(b"a" * (200 * 1024 * 1024))  # 200 MB of "a" in ~200 KB
    path = tmp_path / "bomb.txt.gz"
    path.write_bytes(bomb)
    fd = os.open(path, os.O_RDONLY)
    try:
        head = read_head(fd, path.name)
    finally:
        os.close(fd)
    assert (len(head.data), head.complete, head.compression) == (64 * 1024, False, "gzip")


def test_a_broken_gzip_output_says_so_and_shows_its_bytes(tmp_path: Path) -> None:
    preview = output_preview(
        staged(tmp_path, "out.csv.gz", b"\x1f\x8b\x08\x00garbage" + bytes(range(200))), 5
    )
    assert preview.format == "binary"
    assert preview.note.startswith("cannot decompress it as gzip: ")
    assert preview.lines[0].startswith("<binary, 211 bytes, first bytes: 1f 8b 08 00 67")


def test_parquet_the_child_did_not_decode_names_the_format_size_and_head(tmp_path: Path) -> None:
    preview = output_preview(staged(tmp_path, "out.parquet", b"PAR1" + bytes(range(100)) + b"PAR1"), 5)
    assert preview.format == "binary"
    assert preview.lines == [f"<Parquet, 108 bytes, first bytes: {(b'PAR1' + bytes(range(60))).hex(' ')}>"]


def test_a_decoded_preview_from_the_child_is_the_table(tmp_path: Path) -> None:
    output = dataclasses.replace(
        staged(tmp_path, "out.parquet", b"PAR1....PAR1"),
        decoded={
            "output": 0,
            "format": "parquet",
            "library": "pyarrow 19.0.1",
            "columns": ["id"],
            "types": ["int64"],
            "rows": [["1"], ["2"], ["3"]],
            "total_rows": 3,
            "error": "",
        },
    )
    preview = output_preview(output, 2)
    assert (preview.columns, preview.types, preview.rows) == (["id"], ["int64"], [["1"], ["2"]])
    assert (preview.total_rows, preview.truncated) == (3, True)
    assert preview.note == "parquet, decoded in the flow's environment by pyarrow 19.0.1"
    assert output_preview(output, 3).truncated is False


def test_plain_text_stays_lines(tmp_path: Path) -> None:
    preview = output_preview(staged(tmp_path, "out.txt", b"hello\nworld\n"), 5)
    assert (preview.format, preview.lines, preview.columns) == ("text", ["hello", "world"], [])


# -- end to end through test mode -----------------------------------------------------------------

GZIP_CSV = """
import csv, gzip, io

def process(file, ctx):
    with ctx.output(file.stem + ".csv.gz", "wb") as raw, gzip.open(raw, "wt", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "double"])
        for line in file.open().read().split():
            writer.writerow([line, int(line) * 2])
"""


def test_a_gzip_csv_output_previews_as_a_table(tmp_path: Path) -> None:
    make_files(tmp_path / "in", {"a.txt": "\n".join(str(i) for i in range(10))})
    runner = inline_runner(GZIP_CSV, {"job_config": {"preview_lines": 3}})
    location = Location(str(tmp_path / "in"))
    _, [preview] = preview_file(runner, location, location.file_info("a.txt"))
    assert (preview.name, preview.compression, preview.format) == ("a.csv.gz", "gzip", "csv")
    assert (preview.columns, preview.rows) == (["id", "double"], [["0", "0"], ["1", "2"], ["2", "4"]])
    text = format_previews([preview.as_dict()], heading="== ")
    assert text == [
        f"== a.csv.gz ({preview.size} bytes, gzip)",
        "    id | double",
        "    ---+-------",
        "    0  | 0",
        "    1  | 2",
        "    2  | 4",
        "    ...",
    ]


# -- the text of a table --------------------------------------------------------------------------


def test_a_table_is_aligned_with_types_in_its_header_and_long_cells_cut() -> None:
    assert render_table(["id", "name"], [["1", "x" * 40], ["22", "b"]], ["int64", "string"]) == [
        "id: int64 | name: string",
        "----------+---------------------------------",
        "1         | " + "x" * 31 + "…",
        "22        | b",
    ]


def test_format_previews_shows_the_schema_note_and_rows_of_a_decoded_output() -> None:
    preview = {
        "name": "out.parquet",
        "size": 900,
        "records": None,
        "lines": [],
        "truncated": True,
        "format": "parquet",
        "columns": ["id"],
        "types": ["int64"],
        "rows": [["1"]],
        "total_rows": 50,
        "note": "parquet, decoded in the flow's environment by pyarrow 19.0.1",
    }
    assert format_previews([preview], heading="Output ") == [
        "Output out.parquet (900 bytes, 50 rows)",
        "    [parquet, decoded in the flow's environment by pyarrow 19.0.1]",
        "    id: int64",
        "    ---------",
        "    1",
        "    ...",
    ]
