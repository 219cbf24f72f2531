"""
Taking a file's outputs from the child's drop folder (airflow_byo.runner.output_handoff): moved out
of reach first, then checked through a descriptor; what the child kept a handle or a link to is
replaced by a fresh copy; published modes are fixed. The racing child is in test_sandbox_attacks.py.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from airflow_byo.runner.output_handoff import HandoffError, OutputStaging, clear_drop, discard_outputs
from airflow_byo.runtime.protocol import output_path


@pytest.fixture
def staging(tmp_path: Path) -> OutputStaging:
    return OutputStaging(str(tmp_path))


def report(name: str, size: int, records: int | None = None) -> dict:
    return {"name": name, "size": size, "records": records}


def test_outputs_are_moved_out_of_the_drop_folder_and_checked(staging: OutputStaging) -> None:
    drop = staging.new_drop()
    prefix = os.path.join(drop, "000007")
    Path(output_path(prefix, 0)).write_text("abc")
    Path(output_path(prefix, 1)).write_text("defgh")
    first, second = staging.take(prefix, [report("a/x.jsonl", 3, 2), report("y.bin", 5)])
    assert os.listdir(drop) == []  # nothing of them is left where the child can reach
    assert (first.name, first.size, first.records) == ("a/x.jsonl", 3, 2)
    assert first.local_path == os.path.join(staging.taken, "000007-00000")
    assert Path(second.local_path).read_text() == "defgh"
    assert stat.S_IMODE(os.stat(first.local_path).st_mode) == 0o644
    assert (first.device, first.inode) == (os.stat(first.local_path).st_dev, os.stat(first.local_path).st_ino)
    fd = first.open()
    try:
        assert os.read(fd, 10) == b"abc"
    finally:
        os.close(fd)


def _staged(staging: OutputStaging, make: object) -> tuple[str, str]:
    drop = staging.new_drop()
    prefix = os.path.join(drop, "000000")
    make(output_path(prefix, 0))  # type: ignore[operator]
    return drop, prefix


@pytest.mark.parametrize(
    ("make", "size", "message"),
    [
        (lambda path: None, 3, "output 'x' was reported but not written"),
        (
            lambda path: os.symlink("/etc/hostname", path),
            3,
            r"output 'x' is not a regular file \(a symlink\)",
        ),
        (lambda path: os.mkdir(path), 0, r"output 'x' is not a regular file \(a directory, FIFO"),
        (lambda path: os.mkfifo(path), 0, r"output 'x' is not a regular file \(a directory, FIFO"),
        (lambda path: Path(path).write_text("abc"), 4, "output 'x': reported 4 bytes, wrote 3"),
    ],
    ids=["missing", "symlink", "directory", "fifo (never blocked on)", "size lie"],
)
def test_what_is_not_the_reported_file_is_refused_and_removed(
    staging: OutputStaging, make: object, size: int, message: str
) -> None:
    _, prefix = _staged(staging, make)
    with pytest.raises(HandoffError, match=f"^{message}"):
        staging.take(prefix, [report("x", size)])
    assert os.listdir(staging.taken) == []


def test_a_failure_removes_the_outputs_of_that_file_already_taken(staging: OutputStaging) -> None:
    drop = staging.new_drop()
    prefix = os.path.join(drop, "000000")
    Path(output_path(prefix, 0)).write_text("abc")
    with pytest.raises(HandoffError, match="'y' was reported but not written"):
        staging.take(prefix, [report("x", 3), report("y", 1)])
    assert os.listdir(staging.taken) == []


def test_special_mode_bits_never_survive(staging: OutputStaging) -> None:
    _, prefix = _staged(staging, lambda path: Path(path).write_text("#!/bin/sh\nid\n"))
    os.chmod(output_path(prefix, 0), 0o7777)
    [output] = staging.take(prefix, [report("run.sh", 13)])
    info = os.stat(output.local_path)
    assert stat.S_IMODE(info.st_mode) == 0o644
    assert (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid())


def test_a_handle_the_child_kept_cannot_change_what_is_published(staging: OutputStaging) -> None:
    """A child that keeps its output open writes on after the check: it gets a fresh copy instead."""
    _, prefix = _staged(staging, lambda path: Path(path).write_text("clean"))
    kept = os.open(output_path(prefix, 0), os.O_WRONLY)  # the child's handle
    try:
        [output] = staging.take(prefix, [report("x", 5)])
        os.pwrite(kept, b"DIRTY", 0)  # after the worker's checks
        os.fchmod(kept, 0o4755)
        assert Path(output.local_path).read_text() == "clean"
        assert stat.S_IMODE(os.stat(output.local_path).st_mode) == 0o644
        assert os.fstat(kept).st_ino != output.inode  # a new inode, one the child never held
    finally:
        os.close(kept)


def test_a_hard_link_the_child_kept_is_not_the_published_file(staging: OutputStaging) -> None:
    drop, prefix = _staged(staging, lambda path: Path(path).write_text("clean"))
    os.link(output_path(prefix, 0), os.path.join(drop, "keep"))
    [output] = staging.take(prefix, [report("x", 5)])
    Path(drop, "keep").write_text("DIRTY")
    assert Path(output.local_path).read_text() == "clean"


def test_open_refuses_a_replaced_output(staging: OutputStaging) -> None:
    _, prefix = _staged(staging, lambda path: Path(path).write_text("abc"))
    [output] = staging.take(prefix, [report("x", 3)])
    os.rename(output.local_path, output.local_path + ".old")  # kept: its inode number is not reused
    Path(output.local_path).write_text("xyz")
    with pytest.raises(OSError, match="the staged output was replaced"):
        output.open()
    discard_outputs([output])
    assert not os.path.exists(output.local_path)


def test_clear_drop_removes_everything_but_the_files_in_flight(staging: OutputStaging) -> None:
    drop = staging.new_drop()
    Path(drop, "000001-00000").write_text("in flight")
    Path(drop, "000000-00003").write_text("a failed attempt")
    os.makedirs(os.path.join(drop, "tree", "deep"))
    os.symlink("/etc", os.path.join(drop, "tree", "deep", "etc"))  # never followed
    os.symlink("/etc/passwd", os.path.join(drop, "link"))
    os.mkfifo(os.path.join(drop, "fifo"))
    clear_drop(drop, keep=["000001-"])
    assert os.listdir(drop) == ["000001-00000"]
    assert os.path.exists("/etc/passwd")
