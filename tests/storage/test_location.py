"""
Locations (airflow_byo.storage.location): one contract suite for every backend, the same cases on
local, S3 (moto server) and SFTP (sshd).

Each backend is bound by a small class that arranges and inspects files *without* airflow-byo
(plain files, boto3, the SFTP root on this machine), so the cases check our storage module
against what really is on the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.storage import TEMP_MARKER, FileFilter, Location
from tests.backends import Backend, S3Backend
from tests.storage.uploads import kill_mid_upload

LARGE_FILE_BYTES = 200 * 1024 * 1024


def relative_paths(location: Location, file_filter: FileFilter | None = None) -> list[str]:
    return [f.relative_path for f in location.list_files(file_filter)]


# -- listing --------------------------------------------------------------------------------------


def test_list_with_each_filter(backend: Backend) -> None:
    for path, size in [("in/a.csv", 10), ("in/b.json", 20), ("in/sub/c.csv", 30), ("in/sub/d.txt", 40)]:
        backend.put(path, b"x" * size)
    source = backend.location("in", "source")
    assert relative_paths(source) == ["a.csv", "b.json", "sub/c.csv", "sub/d.txt"]
    assert relative_paths(source, FileFilter(include=("*.csv",))) == ["a.csv", "sub/c.csv"]
    assert relative_paths(source, FileFilter(exclude=("sub/*",))) == ["a.csv", "b.json"]
    assert relative_paths(source, FileFilter(recursive=False)) == ["a.csv", "b.json"]
    assert relative_paths(source, FileFilter(min_size=20, max_size=30)) == ["b.json", "sub/c.csv"]
    files = {f.relative_path: f for f in source.list_files()}
    assert files["sub/d.txt"].size == 40
    assert files["a.csv"].url == backend.url("in/a.csv")


def test_list_modified_after(backend: Backend) -> None:
    backend.put("in/old.csv", b"1")
    time.sleep(1.1)  # mtimes have one-second resolution on S3 and SFTP
    cutoff = datetime.now(UTC)
    time.sleep(1.1)
    backend.put("in/new.csv", b"2")
    source = backend.location("in", "source")
    assert relative_paths(source, FileFilter(modified_after=cutoff)) == ["new.csv"]


def test_listing_skips_our_temporary_names(backend: Backend) -> None:
    backend.put("in/a.csv", b"1")
    backend.put(f"in/{TEMP_MARKER}abc-a.csv", b"partial")
    assert relative_paths(backend.location("in")) == ["a.csv"]


def test_missing_directory(backend: Backend) -> None:
    backend.put("elsewhere/a.csv", b"1")
    with pytest.raises(ByoStorageError, match=r"source '.*/nowhere' .*does not exist") as raised:
        backend.location("nowhere", "source").list_files()
    if backend.conn_id:
        assert f"connection {backend.conn_id!r}" in str(raised.value)


# -- reading --------------------------------------------------------------------------------------


def test_read_a_local_copy(backend: Backend, tmp_path: Path) -> None:
    backend.put("in/a.csv", b"id,name\n1,x\n")
    source = backend.location("in", "source")
    [file] = source.list_files()
    staging = tmp_path / "staging"
    staging.mkdir()
    local = source.stage(file, str(staging)).path
    assert Path(local).read_bytes() == b"id,name\n1,x\n"


def test_file_info_of_a_missing_file(backend: Backend) -> None:
    backend.put("in/a.csv", b"1")
    with pytest.raises(ByoStorageError, match=r"file '.*/in/missing\.csv' does not exist"):
        backend.location("in").file_info("missing.csv")


# -- writing --------------------------------------------------------------------------------------


def test_atomic_write_and_overwrite(backend: Backend, tmp_path: Path) -> None:
    destination = backend.location("out", "destination")
    first = tmp_path / "first"
    first.write_bytes(b"version 1")
    assert destination.publish(str(first), "by_day/2024-05-01.jsonl") == backend.url(
        "out/by_day/2024-05-01.jsonl"
    )
    assert backend.get("out/by_day/2024-05-01.jsonl") == b"version 1"
    second = tmp_path / "second"
    second.write_bytes(b"version 2, longer")
    destination.publish(str(second), "by_day/2024-05-01.jsonl")
    assert backend.get("out/by_day/2024-05-01.jsonl") == b"version 2, longer"
    assert backend.names("out") == ["by_day/2024-05-01.jsonl"]  # no temporary left behind


def test_write_permission_denied(backend: Backend, tmp_path: Path, connections: Any) -> None:
    payload = tmp_path / "payload"
    payload.write_bytes(b"data")
    if backend.name == "local":
        # Root may write anywhere: try in a child process without CAP_DAC_OVERRIDE, like any user.
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        script = textwrap.dedent(
            f"""
            from airflow_byo.storage import Location
            try:
                Location({str(locked)!r}, role="destination").publish({str(payload)!r}, "x.txt")
            except Exception as exc:
                print(type(exc).__name__, exc)
            """
        )
        drop = (
            ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"] if os.getuid() == 0 else []
        )
        result = subprocess.run(
            [*drop, sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            check=True,
        )
        message = result.stdout
        assert message.startswith("ByoStorageError"), result.stdout + result.stderr
    elif backend.name == "s3":
        reader = connections("byo_s3_reader", backend.server.connection("reader"))  # type: ignore[attr-defined]
        with pytest.raises(ByoStorageError) as raised:
            backend.location("out", "destination", conn_id=reader).publish(str(payload), "x.txt")
        message = str(raised.value)
        assert "connection 'byo_s3_reader'" in message
    else:
        locked = backend.root / "locked"  # type: ignore[attr-defined]
        locked.mkdir()
        os.chown(locked, 0, 0)
        with pytest.raises(ByoStorageError) as raised:
            backend.location("locked", "destination").publish(str(payload), "x.txt")
        message = str(raised.value)
    assert "permission denied" in message
    assert "destination '" in message
    assert backend.get("locked/x.txt") is None
    assert backend.get("out/x.txt") is None


# -- large files: streamed, bounded memory ---------------------------------------------------------

_MEASURE = """
import json, sys, tempfile
from airflow_byo.storage import Location

def peak_kb():  # VmHWM: getrusage's ru_maxrss would start from the forking pytest worker's peak
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))

source = Location(sys.argv[1], sys.argv[2] or None)
destination = Location(sys.argv[3], sys.argv[2] or None)
[file] = source.list_files()
source.fs, destination.fs  # connect before measuring
before = peak_kb()
with tempfile.TemporaryDirectory() as staging:
    local = source.stage(file, staging).path
    destination.publish(local, "copy.bin")
after = peak_kb()
print(json.dumps({"size": file.size, "peak_growth_kb": after - before}))
"""


def test_large_file_is_streamed_with_bounded_memory(backend: Backend) -> None:
    backend.put_large("big/in/large.bin", LARGE_FILE_BYTES)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEASURE,
            backend.url("big/in"),
            backend.conn_id or "",
            backend.url("big/out"),
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["size"] == LARGE_FILE_BYTES
    # Growth of the peak RSS while moving 200 MB: buffers, not the file.
    assert measured["peak_growth_kb"] < 120 * 1024, measured
    copied = backend.names("big/out")
    assert copied == ["copy.bin"]


# -- killed during an upload ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["s3", "sftp"], indirect=True)
def test_kill_during_upload_leaves_the_previous_version(backend: Backend, tmp_path: Path) -> None:
    backend.put("out/report.bin", b"previous complete version")
    kill_mid_upload(backend, tmp_path, LARGE_FILE_BYTES, _upload_in_progress)
    assert backend.get("out/report.bin") == b"previous complete version"
    assert [name for name in backend.names("out") if TEMP_MARKER not in name] == ["report.bin"]


def _upload_in_progress(backend: Backend) -> bool:
    if isinstance(backend, S3Backend):
        return bool(backend.client.list_multipart_uploads(Bucket=backend.bucket).get("Uploads"))
    return any(
        TEMP_MARKER in name and (backend.root / "out" / name).stat().st_size > 0  # type: ignore[attr-defined]
        for name in backend.names("out")
    )


def test_large_s3_listing_pages_through_every_object(s3_server: Any, connections: Any) -> None:
    """2,500 objects: three pages of ListObjectsV2 (1,000 keys each), listed once, filters applied."""
    from concurrent.futures import ThreadPoolExecutor

    backend = S3Backend(s3_server, connections("byo_s3_many", s3_server.connection()))
    names = [f"in/{index // 1000:02d}/f{index:05d}.{'csv' if index % 2 else 'txt'}" for index in range(2_500)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(
            pool.map(
                lambda name: backend.client.put_object(Bucket=backend.bucket, Key=name, Body=b"x"), names
            )
        )
    backend.client.put_object(Bucket=backend.bucket, Key="in/00/", Body=b"")  # a folder marker: no file
    source = backend.location("in", "source")
    every = source.list_files()
    assert len(every) == 2_500
    assert [f.relative_path for f in every[:2]] == ["00/f00000.txt", "00/f00001.csv"]
    first = every[0]
    assert (first.size, bool(first.mtime), bool(first.etag)) == (1, True, True)
    assert '"' not in str(first.etag)  # ETags come without S3's quotes, as before
    assert len(source.list_files(FileFilter(include=("*.csv",)))) == 1_250
    assert source.list_files(FileFilter(recursive=False)) == []  # every object is a folder down
    # A run over 100,000 objects must not keep each one's listing entry (~1.3 KB): s3fs's `find`
    # left them all in the file system's listing cache for its lifetime (issue 24, bench W2).
    assert not source.backend.fs.dircache  # type: ignore[attr-defined]
