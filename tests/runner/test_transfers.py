"""
Inputs on their way to the child (airflow_byo.runner.transfers): local ones linked into the
pipeline's own input folder (the child sees no other file of the source), remote ones a few ahead.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.runner.transfers import fetch_ahead
from airflow_byo.storage import Location, SourceFile
from tests.backends import S3Backend
from tests.conftest import make_files


def settled_count(directory: Path, at_least: int) -> int:
    """The number of files in ``directory`` once downloads have stopped arriving."""
    deadline = time.monotonic() + 30
    while len(list(directory.iterdir())) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # anything beyond the window would have arrived by now
    return len(list(directory.iterdir()))


def test_local_inputs_are_linked_into_the_input_folder(tmp_path: Path) -> None:
    make_files(tmp_path / "in", {"a.csv": "a", "sub/b.csv": "bb", "neighbour.txt": "not ours"})
    staging = tmp_path / "staging"
    staging.mkdir()
    source = Location(str(tmp_path / "in"))
    selected = [f for f in source.list_files() if f.name.endswith(".csv")]
    with ThreadPoolExecutor(2) as pool:
        fetched = list(fetch_ahead(pool, source, selected, str(staging), depth=2))
    assert [(f.seq, f.file.relative_path) for f in fetched] == [(0, "a.csv"), (1, "sub/b.csv")]
    staged = fetched[1].staged.result()
    assert staged.temporary
    assert Path(staged.path).parent == staging
    assert Path(staged.path).name.endswith("-b.csv")
    assert Path(staged.path).stat().st_ino == (tmp_path / "in" / "sub" / "b.csv").stat().st_ino  # a link
    assert fetched[1].request() == {
        "op": "file",
        "seq": 1,
        "path": staged.path,
        "url": str(tmp_path / "in" / "sub" / "b.csv"),
        "name": "b.csv",
        "relative_path": "sub/b.csv",
        "size": 2,
        "out_prefix": "",
    }
    assert len(list(staging.iterdir())) == 2  # the selected files, not the neighbour
    for item in fetched:
        item.staged.result().release()
    assert (tmp_path / "in" / "sub" / "b.csv").read_text() == "bb"  # never delete a local source file
    assert list(staging.iterdir()) == []


def test_a_local_input_the_child_could_not_read_is_a_private_copy(tmp_path: Path) -> None:
    """For a root worker the child is another uid: a file only the worker may read is copied for it."""
    make_files(tmp_path / "in", {"secret.csv": "only the worker"})
    (tmp_path / "in" / "secret.csv").chmod(0o600)
    staging = tmp_path / "staging"
    staging.mkdir()
    source = Location(str(tmp_path / "in"))
    staged = source.stage(source.list_files()[0], str(staging), owner=(4242, 4343))
    info = Path(staged.path).stat()
    assert info.st_ino != (tmp_path / "in" / "secret.csv").stat().st_ino
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (4242, 4343, 0o400)
    assert Path(staged.path).read_text() == "only the worker"
    readable = source.stage(source.list_files()[0], str(staging))  # the worker's own uid: a link
    assert Path(readable.path).stat().st_ino == (tmp_path / "in" / "secret.csv").stat().st_ino


def test_remote_inputs_are_downloaded_at_most_depth_ahead(
    tmp_path: Path, s3_server: Any, connections: Any
) -> None:
    backend = S3Backend(s3_server, connections("byo_s3_transfers", s3_server.connection()))
    for index in range(8):
        backend.put(f"in/f{index}.txt", b"x" * (index + 1))
    source = backend.location("in", "source")
    staging = tmp_path / "staging"
    staging.mkdir()
    with ThreadPoolExecutor(4) as pool:
        fetched = fetch_ahead(pool, source, source.list_files(), str(staging), depth=2)
        first = next(fetched)
        assert first.seq == 0
        assert settled_count(staging, 3) == 3  # the one handed out and two ahead
        second = next(fetched)
        assert settled_count(staging, 4) == 4
        for item in (first, second):
            staged = item.staged.result()
            assert staged.temporary
            assert Path(staged.path).read_bytes() == b"x" * (item.seq + 1)
            assert item.request()["path"] == staged.path
            staged.release()
        assert settled_count(staging, 2) == 2  # released copies are gone; the window stays
        rest = list(fetched)
        assert [item.seq for item in rest] == [2, 3, 4, 5, 6, 7]
        for item in rest:
            item.staged.result().release()
    assert list(staging.iterdir()) == []


def test_a_failed_download_is_reported_when_that_files_turn_comes(
    tmp_path: Path, s3_server: Any, connections: Any
) -> None:
    backend = S3Backend(s3_server, connections("byo_s3_transfers", s3_server.connection()))
    backend.put("in/here.txt", b"x")
    source = backend.location("in", "source")
    gone = SourceFile(backend.url("in/gone.txt"), "gone.txt", 1, None)
    [here] = source.list_files()
    with ThreadPoolExecutor(2) as pool:
        missing, present = fetch_ahead(pool, source, [gone, here], str(tmp_path), depth=1)
    with pytest.raises(ByoStorageError, match=r"cannot download .* from source .*: it does not exist"):
        missing.request()
    assert present.request()["relative_path"] == "here.txt"
    present.staged.result().release()


def test_a_vanished_input_is_named_in_the_error(tmp_path: Path, s3_server: Any, connections: Any) -> None:
    backend = S3Backend(s3_server, connections("byo_s3_transfers", s3_server.connection()))
    source = backend.location("in", "source")
    gone = SourceFile(backend.url("in/gone.txt"), "gone.txt", 1, None)
    with ThreadPoolExecutor(1) as pool:
        [missing] = fetch_ahead(pool, source, [gone], str(tmp_path), depth=1)
    with pytest.raises(ByoStorageError, match=r"gone\.txt"):
        missing.request()
