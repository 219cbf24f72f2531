"""
Test mode (airflow_byo.runner.preview): one sample file through the processor, previews of what
it would write, nothing written; how a typed sample is found, and how previews read as text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.runner.preview import format_previews, locate_test_file, preview_file, read_preview
from airflow_byo.storage import Location
from tests.conftest import CSV_TO_RECORDS, inline_runner, make_files


def test_test_mode_previews_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in"
    make_files(source, {"a.csv": "x,y\n" + "".join(f"{i},{i}\n" for i in range(50))})
    runner = inline_runner(CSV_TO_RECORDS, {"job_config": {"preview_lines": 3}})
    location = Location(str(source))
    summary, previews = preview_file(runner, location, location.file_info("a.csv"))
    [preview] = previews
    assert preview.name == "a.jsonl"
    assert preview.records == 50
    assert preview.lines == ['{"x": 0, "y": 0}', '{"x": 1, "y": 1}', '{"x": 2, "y": 2}']
    assert preview.truncated
    assert summary.test_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert sorted(p.name for p in source.iterdir()) == ["a.csv"]


def test_a_failing_sample_is_a_failed_summary_without_previews(tmp_path: Path) -> None:
    make_files(tmp_path / "in", {"a.csv": "x"})
    runner = inline_runner("def process(file, ctx):\n    ctx.write('a.txt', 'x')\n    raise KeyError('x')\n")
    location = Location(str(tmp_path / "in"))
    summary, previews = preview_file(runner, location, location.file_info("a.csv"))
    assert previews == []
    [failed] = summary.failed
    assert (failed.error_type, failed.error) == ("KeyError", "'x'")
    assert summary.as_dict()["files_processed"] == 0


# -- read_preview ---------------------------------------------------------------------------------


def test_read_preview_keeps_the_first_lines(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_text("one\ntwo\nthree\n")
    assert read_preview(str(path), 5) == (["one", "two", "three"], False)
    assert read_preview(str(path), 2) == (["one", "two"], True)
    assert read_preview(str(path), 3) == (["one", "two", "three"], False)


def test_read_preview_reads_at_most_64_kb(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_text("x" * (64 * 1024 + 10))  # one long line
    [line], truncated = read_preview(str(path), 10)
    assert len(line) == 64 * 1024
    assert truncated


def test_binary_output_shows_as_hex(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    lines, truncated = read_preview(str(path), 10)
    head = (b"\x89PNG\r\n\x1a\n" + bytes(range(56))).hex(" ")
    assert lines == [f"<binary, 264 bytes, first bytes: {head}>"]
    assert truncated


def test_a_multibyte_character_cut_at_the_64_kb_mark_is_still_text(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"a" * (64 * 1024 - 1) + "é".encode() + b"tail")
    [line], truncated = read_preview(str(path), 10)
    assert line == "a" * (64 * 1024 - 1)
    assert truncated


# -- format_previews ------------------------------------------------------------------------------


def test_format_previews_heads_each_output_and_indents_its_lines() -> None:
    previews = [
        {"name": "a.jsonl", "size": 30, "records": 2, "lines": ['{"a": 1}', '{"a": 2}'], "truncated": True},
        {"name": "b.txt", "size": 0, "records": None, "lines": [], "truncated": False},
    ]
    assert format_previews(previews, heading="Output ") == [
        "Output a.jsonl (30 bytes, 2 records)",
        '    {"a": 1}',
        '    {"a": 2}',
        "    ...",
        "Output b.txt (0 bytes)",
    ]
    assert format_previews([], heading="Output ") == []


# -- locate_test_file -----------------------------------------------------------------------------


def test_a_local_sample_with_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_files(tmp_path / "samples", {"a.csv": "abc"})
    monkeypatch.setenv("HOME", str(tmp_path))
    location, file = locate_test_file("~/samples/a.csv", "ignored_for_local_files")
    assert location.url == str(tmp_path / "samples")
    assert location.conn_id is None
    assert (file.url, file.relative_path, file.size) == (str(tmp_path / "samples" / "a.csv"), "a.csv", 3)


def test_a_file_url_and_a_relative_path_name_the_same_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_files(tmp_path / "samples", {"a.csv": "abc"})
    monkeypatch.chdir(tmp_path)
    by_url = locate_test_file(f"file://{tmp_path}/samples/a.csv", None)
    by_relative = locate_test_file("samples/a.csv", None)
    assert by_url[0].url == by_relative[0].url == str(tmp_path / "samples")
    assert by_url[1] == by_relative[1]
    assert by_url[1].url == str(tmp_path / "samples" / "a.csv")


def test_a_missing_or_directory_sample_is_named(tmp_path: Path) -> None:
    with pytest.raises(ByoStorageError, match=r"file '.*/missing\.csv' does not exist"):
        locate_test_file(str(tmp_path / "missing.csv"), None)
    (tmp_path / "dir").mkdir()
    with pytest.raises(ByoStorageError, match=r"'.*/dir' is not a file; give the path of one file"):
        locate_test_file(str(tmp_path / "dir"), None)


def test_a_remote_sample_is_read_through_the_connection(s3_server: Any, connections: Any) -> None:
    from tests.backends import S3Backend

    backend = S3Backend(s3_server, connections("byo_s3_sample", s3_server.connection()))
    backend.put("samples/a.csv", b"abcd")
    location, file = locate_test_file(backend.url("samples/a.csv"), backend.conn_id)
    assert location.url == backend.url("samples")
    assert location.conn_id == "byo_s3_sample"
    assert (file.url, file.size) == (backend.url("samples/a.csv"), 4)
