"""
Nothing partial, nothing outside (issue 13), on every backend: a file's outputs are published
all or nothing, and links never lead a source or a destination outside its root. What killed
workers leave in remote destinations is swept: test_sweeps.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.results import StagedOutput
from airflow_byo.runtime.protocol import output_path
from airflow_byo.storage import FileFilter, Location
from airflow_byo.storage.publisher import Publisher
from tests.backends import Backend
from tests.conftest import staged_output

TOO_LONG = {"local": "x" * 300 + ".txt", "sftp": "x" * 300 + ".txt", "s3": "deep/" + "x" * 1100}


def stage(publisher: Publisher, outputs: dict[str, bytes]) -> list[StagedOutput]:
    staged = []
    for index, (name, data) in enumerate(outputs.items()):
        path = output_path(os.path.join(publisher.staging.taken, "000000"), index)
        Path(path).write_bytes(data)
        staged.append(staged_output(path, name))
    return staged


# -- all or nothing per input file ----------------------------------------------------------------


def test_a_second_output_that_cannot_be_published_leaves_nothing(backend: Backend) -> None:
    backend.put("out/keep.txt", b"an earlier file's output")
    with Publisher(backend.location("out", "destination")) as publisher:
        outputs = stage(publisher, {"first.txt": b"1", TOO_LONG[backend.name]: b"2"})
        with pytest.raises(ByoStorageError) as raised:
            publisher.publish(outputs)
    assert "xxxx" in str(raised.value)
    assert backend.names("out") == ["keep.txt"]  # no first output, no temporary


def test_a_failed_commit_retracts_the_outputs_already_published(backend: Backend) -> None:
    """The second output fails only when it is made visible: the first one is removed again."""
    with Publisher(backend.location("out", "destination")) as publisher:
        outputs = stage(publisher, {"a/first.txt": b"1", "second.txt": b"2"})
        failing = outputs[1]
        original = publisher.destination.prepare_publish

        def prepare(local_path: str, name: str) -> Any:
            pending = original(local_path, name)
            if name == failing.name:

                def broken() -> None:
                    assert backend.get("out/a/first.txt") == b"1"  # the first is already visible
                    raise OSError(28, "No space left on device")

                pending._commit = broken
            return pending

        publisher.destination.prepare_publish = prepare  # type: ignore[method-assign]
        with pytest.raises(ByoStorageError, match="No space left"):
            publisher.publish(outputs)
    assert [n for n in backend.names("out") if not n.endswith("/")] == []


# -- symlinks -------------------------------------------------------------------------------------


def test_a_local_source_lists_only_files_inside_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = tmp_path / "secret"
    (outside / "dir").mkdir(parents=True)
    (outside / "passwd").write_text("root:x")
    (outside / "dir" / "more.txt").write_text("more")
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("a")
    (source / "sub" / "b.txt").write_text("b")
    (source / "to-file").symlink_to(outside / "passwd")
    (source / "to-dir").symlink_to(outside / "dir")
    (source / "inside-link").symlink_to(source / "a.txt")
    (source / "loop").symlink_to(source)
    os.mkfifo(source / "fifo")
    location = Location(str(source), role="source")
    with caplog.at_level("WARNING"):
        assert [f.relative_path for f in location.list_files()] == ["a.txt", "inside-link", "sub/b.txt"]
    assert f"{source / 'to-file'} -> {outside / 'passwd'}: a link to outside the source" in caplog.text
    assert "follow_symlinks=True" in caplog.text
    trusted = [f.relative_path for f in location.list_files(FileFilter(follow_symlinks=True))]
    assert trusted == ["a.txt", "inside-link", "sub/b.txt", "to-dir/more.txt", "to-file"]


def test_a_local_source_file_swapped_for_a_link_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_text("a")
    location = Location(str(source), role="source")
    [file] = location.list_files()
    (source / "a.txt").unlink()
    (source / "a.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(ByoStorageError, match=r"resolves to .*secret', outside the source .*follow_symlinks"):
        location.stage(file, str(tmp_path))
    followed = Location(str(source), follow_symlinks=True).stage(file, str(tmp_path))
    assert Path(followed.path).read_text() == "s"  # a trusted source's link is read


def test_a_local_source_directory_swapped_for_a_link_is_not_read(tmp_path: Path) -> None:
    """The check is on the opened file's real path: every component counts, not only the file's own name."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.txt").write_text("secret")
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.txt").write_text("a")
    (source / "real").mkdir()
    (source / "real" / "b.txt").write_text("b")
    location = Location(str(source), role="source")
    files = {f.relative_path: f for f in location.list_files()}
    (source / "sub" / "a.txt").unlink()
    (source / "sub").rmdir()
    (source / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(
        ByoStorageError, match=r"sub/a.txt' resolves to .*elsewhere/a.txt', outside the source"
    ):
        location.stage(files["sub/a.txt"], str(tmp_path))
    # A directory swapped for a link that stays inside the source is still read.
    (source / "sub").unlink()
    (source / "sub").symlink_to(source / "real")
    (source / "real" / "a.txt").write_text("inside")
    assert Path(location.stage(files["sub/a.txt"], str(tmp_path)).path).read_text() == "inside"
    # A file swapped for a directory, or gone, is no regular file.
    (source / "real" / "b.txt").unlink()
    (source / "real" / "b.txt").mkdir()
    with pytest.raises(ByoStorageError, match=r"real/b.txt' is not a regular file"):
        location.stage(files["real/b.txt"], str(tmp_path))
    (source / "real" / "b.txt").rmdir()
    with pytest.raises(ByoStorageError, match=r"real/b.txt' is not a regular file"):
        location.stage(files["real/b.txt"], str(tmp_path))


def test_an_sftp_source_skips_links_the_server_reports(backend_sftp: Backend, tmp_path: Path) -> None:
    backend = backend_sftp
    backend.put("in/a.txt", b"a")
    backend.put("elsewhere/secret.txt", b"s")
    root: Path = backend.root  # type: ignore[attr-defined]
    (root / "in" / "sub").mkdir()
    (root / "in" / "sub" / "link.txt").symlink_to(root / "elsewhere" / "secret.txt")
    (root / "in" / "top-link.txt").symlink_to(root / "elsewhere" / "secret.txt")
    source = backend.location("in", "source")
    assert [f.relative_path for f in source.list_files()] == ["a.txt"]
    assert [f.relative_path for f in source.list_files(FileFilter(recursive=False))] == ["a.txt"]
    trusted = source.list_files(FileFilter(follow_symlinks=True))
    assert [(f.relative_path, f.size) for f in trusted] == [
        ("a.txt", 1),
        ("sub/link.txt", 1),
        ("top-link.txt", 1),
    ]


@pytest.mark.parametrize("backend", ["local", "sftp"], indirect=True)
def test_a_destination_is_never_written_through_a_link(backend: Backend, tmp_path: Path) -> None:
    root: Path = backend.root  # type: ignore[attr-defined]
    (root / "elsewhere").mkdir(parents=True)
    (root / "out").mkdir()
    (root / "out" / "by_day").symlink_to(root / "elsewhere")
    payload = tmp_path / "payload"
    payload.write_bytes(b"data")
    destination = backend.location("out", "destination")
    with pytest.raises(ByoStorageError) as raised:
        destination.publish(str(payload), "by_day/x.txt")
    assert f"{str(root / 'out' / 'by_day')!r} in destination" in str(raised.value)
    assert "is a symlink" in str(raised.value)
    assert list((root / "elsewhere").iterdir()) == []


@pytest.fixture
def backend_sftp(sftp_server: Any, connections: Any) -> Backend:
    from tests.backends import SftpBackend

    return SftpBackend(sftp_server, connections("byo_sftp_links", sftp_server.connection()))


# -- local staging on another file system ---------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a second file system (/dev/shm)")
def test_an_output_staged_on_another_file_system_is_linked_in_complete(tmp_path: Path) -> None:
    """The destination is a mount point: bytes go through an unnamed O_TMPFILE linked into place."""
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same file system here")
    destination = Location(str(tmp_path / "out"), role="destination")
    for version in (b"first version", b"second, longer version"):  # new name, then over an old one
        staged = Path("/dev/shm") / f"byo-test-{os.getpid()}"
        staged.write_bytes(version)
        try:
            assert destination.publish(str(staged), "by_day/x.txt") == str(
                tmp_path / "out" / "by_day" / "x.txt"
            )
        finally:
            staged.unlink(missing_ok=True)
        assert (tmp_path / "out" / "by_day" / "x.txt").read_bytes() == version
        assert sorted(p.name for p in (tmp_path / "out" / "by_day").iterdir()) == ["x.txt"]
