"""
Remote leftovers of killed workers (issue 13): the next run removes the SFTP upload temporaries
and the S3 multipart uploads a killed run left in its destination, reports them in the summary
and the log, and touches neither a live run's uploads nor anything outside the destination.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.storage import TEMP_MARKER, Location
from airflow_byo.storage.backends import base
from airflow_byo.storage.backends.base import STALE_FLOOR_SECONDS, stale_age
from airflow_byo.storage.backends.sftp import upload_temporary
from airflow_byo.storage.publisher import Publisher
from tests.backends import Backend, S3Backend, SftpBackend
from tests.conftest import RecordingLogger, inline_runner, make_files
from tests.storage.uploads import kill_mid_upload

#: A temporary name as a process of this machine writes it: the child prints it and exits.
_TEMP_OF_A_DEAD_PROCESS = """
import sys
from airflow_byo.storage.backends.sftp import upload_temporary
print(upload_temporary(sys.argv[1]))
"""


def _kill_during_upload(backend: Backend, tmp_path: Path) -> None:
    """A worker SIGKILLed while it publishes a large file to ``out/``: something to sweep."""
    kill_mid_upload(backend, tmp_path, 120 * 1024 * 1024, _uploading)
    assert _uploads(backend), "the killed upload left nothing to sweep"


def _uploading(backend: Backend) -> bool:
    """A temporary, or an S3 upload with a part: moto dates every upload's start 2010-11-10, so
    only its parts' times say how long it has been idle."""
    if not isinstance(backend, S3Backend):
        return bool(_uploads(backend))
    found = backend.client.list_multipart_uploads(Bucket=backend.bucket).get("Uploads", [])
    return any(
        backend.client.list_parts(Bucket=backend.bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts")
        for u in found
    )


def _uploads(backend: Backend, under: str = "out") -> list[str]:
    """Incomplete S3 uploads (keys) of the bucket, or SFTP temporaries under ``under``."""
    if isinstance(backend, S3Backend):
        found = backend.client.list_multipart_uploads(Bucket=backend.bucket).get("Uploads", [])
        return sorted(u["Key"] for u in found)
    return [n for n in backend.names(under) if TEMP_MARKER in n]


def _dead_writers_temp(backend: SftpBackend, final: str) -> str:
    """Leave a temporary of a process of this machine that is gone, at ``final``'s place."""
    path = backend.root / final
    name = subprocess.run(
        [sys.executable, "-c", _TEMP_OF_A_DEAD_PROCESS, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    backend.put(str(Path(name).relative_to(backend.root)), b"half an upload")
    return str(Path(name).relative_to(backend.root))


def _age(backend: SftpBackend, relative: str, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(backend.root / relative, (when, when))


def _run_flow(tmp_path: Path, destination: Location, lease: float) -> Any:
    """One run of a flow over one local input into ``destination``; returns its summary."""
    source = tmp_path / "in"
    make_files(source, {"a.txt": "hello"})
    runner = inline_runner(
        "def process(file, ctx):\n    return file.open().read().upper()\n",
        {"job_config": {"lease_seconds": lease, "output_format": "text"}},
        RecordingLogger(),
        sandbox="off",
    )
    src = Location(str(source), role="source")
    return runner.run(src, destination, src.list_files())


# -- when a leftover is stale ---------------------------------------------------------------------


def test_the_stale_age_is_the_lease_but_never_under_the_floor() -> None:
    assert stale_age(1) == STALE_FLOOR_SECONDS == 3600  # the tests' one-second lease: still an hour
    assert stale_age(600) == 3600
    assert stale_age(7200) == 7200  # a flow whose files take hours keeps its uploads longer
    assert Publisher(Location("/tmp/x", role="destination"), lease_seconds=5).stale_after == 3600


def test_an_upload_temporary_names_its_writer_and_fits_in_a_file_name() -> None:
    name = upload_temporary("/d/report.bin").rsplit("/", 1)[-1]
    assert name.startswith(f"{TEMP_MARKER}up-")
    assert f"-{os.getpid()}-" in name
    assert name.endswith("-report.bin")
    long = upload_temporary("/d/" + "é" * 127).rsplit("/", 1)[-1]  # a 254-byte final name
    assert len(long.encode()) <= 255
    assert long.startswith(f"{TEMP_MARKER}up-")


def test_a_long_output_name_still_publishes_on_sftp(sftp: SftpBackend, tmp_path: Path) -> None:
    """The temporary's name is cut to 255 bytes: an output named up to the limit can be written."""
    payload = tmp_path / "payload"
    payload.write_bytes(b"data")
    name = "x" * 250 + ".txt"
    sftp.location("out", "destination").publish(str(payload), name)
    assert sftp.names("out") == [name]


# -- SFTP -----------------------------------------------------------------------------------------


@pytest.fixture
def sftp(sftp_server: Any, connections: Any) -> SftpBackend:
    return SftpBackend(sftp_server, connections("byo_sftp_sweeps", sftp_server.connection()))


def test_a_killed_workers_sftp_temporary_is_removed_at_once_by_the_next_run(
    sftp: SftpBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _kill_during_upload(sftp, tmp_path)
    (killed,) = _uploads(sftp)
    assert killed.startswith(f"{TEMP_MARKER}up-")
    # What must stay: a live process's upload (this one's), another machine's young one,
    # a dead writer's temporary outside the destination.
    live = Path(upload_temporary(str(sftp.root / "out" / "live.bin"))).name
    sftp.put(f"out/{live}", b"being written")
    _age(sftp, f"out/{live}", 600)  # idle for a while (waiting for its commit): still live
    elsewhere = live.replace(f"up-{live.split('-')[2]}-", "up-0123456789-", 1)
    sftp.put(f"out/{elsewhere}", b"another worker's")
    _age(sftp, f"out/{elsewhere}", 600)
    outside = _dead_writers_temp(sftp, "outside/report.bin")
    # What goes: an hour-old temporary of an older release (no writer in its name).
    sftp.put(f"out/{TEMP_MARKER}0123456789ab-old.bin", b"ancient")
    _age(sftp, f"out/{TEMP_MARKER}0123456789ab-old.bin", 2 * 3600)

    with caplog.at_level("WARNING"):
        summary = _run_flow(tmp_path, sftp.location("out", "destination"), lease=1)

    removed = [sftp.url(f"out/{killed}"), sftp.url(f"out/{TEMP_MARKER}0123456789ab-old.bin")]
    assert sorted(summary.leftovers_removed) == sorted(removed)
    assert sorted(_uploads(sftp)) == sorted([live, elsewhere])
    assert sftp.names("outside") == [Path(outside).name]
    assert sftp.get("out/a.txt") == b"HELLO"  # the run itself published as usual
    assert sftp.get("out/report.bin") is None
    assert "its writer on this machine is gone" in caplog.text
    assert "Removed 2 leftover(s) of killed runs from destination" in caplog.text
    data = summary.as_dict()
    assert data["leftovers_removed"] == 2
    assert sorted(data["leftovers_removed_sample"]) == sorted(removed)
    (row,) = [line for line in summary.format_table().splitlines() if "leftovers of killed runs" in line]
    assert row.split("removed", 1)[1].strip() == f"2 ({', '.join(summary.leftovers_removed)})"


def test_temporaries_deeper_in_the_destination_are_swept_when_the_run_publishes_there(
    sftp: SftpBackend, tmp_path: Path
) -> None:
    deep = _dead_writers_temp(sftp, "out/by_day/a.txt")
    other = _dead_writers_temp(sftp, "out/elsewhere/a.txt")
    source = tmp_path / "in"
    make_files(source, {"by_day/a.txt": "hello"})
    runner = inline_runner(
        "def process(file, ctx):\n    return file.open().read().upper()\n",
        {"job_config": {"output_name": "{rel_dir}/{stem}.{ext}", "output_format": "text"}},
        sandbox="off",
    )
    src = Location(str(source), role="source")
    summary = runner.run(src, sftp.location("out", "destination"), src.list_files())
    assert summary.leftovers_removed == [sftp.url(deep)]
    assert sftp.names("out") == sorted(["by_day/a.txt", str(Path(other).relative_to("out"))])


def test_a_run_without_leftovers_reports_none(sftp: SftpBackend, tmp_path: Path) -> None:
    summary = _run_flow(tmp_path, sftp.location("out", "destination"), lease=1)
    assert summary.leftovers_removed == []
    assert summary.as_dict()["leftovers_removed"] == 0
    assert "leftovers of killed runs" not in summary.format_table()


# -- S3 -------------------------------------------------------------------------------------------


@pytest.fixture
def s3(s3_server: Any, connections: Any) -> S3Backend:
    return S3Backend(s3_server, connections("byo_s3_sweeps", s3_server.connection()))


def test_a_killed_workers_s3_upload_is_aborted_by_the_next_run_once_idle_past_the_floor(
    s3: S3Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _kill_during_upload(s3, tmp_path)
    # Right after the kill, a run with a one-second lease leaves it: S3 cannot say whose it is,
    # and a live upload may be idle that long (an hour's floor).
    assert _run_flow(tmp_path, s3.location("out", "destination"), lease=1).leftovers_removed == []
    assert _uploads(s3) == ["out/report.bin"]

    monkeypatch.setattr(base, "STALE_FLOOR_SECONDS", 2.0)  # an hour later, in seconds
    live = s3.client.create_multipart_upload(Bucket=s3.bucket, Key="out/live.bin")  # started long ago
    s3.client.create_multipart_upload(Bucket=s3.bucket, Key="other/old.bin")  # outside the prefix
    s3.client.create_multipart_upload(Bucket=s3.bucket, Key="outside.bin")  # "out" is no prefix of it
    time.sleep(2.5)
    s3.client.upload_part(  # ... but still adding parts: live
        Bucket=s3.bucket, Key="out/live.bin", UploadId=live["UploadId"], PartNumber=1, Body=b"x" * 1024
    )

    with caplog.at_level("WARNING"):
        summary = _run_flow(tmp_path, s3.location("out", "destination"), lease=1)

    assert summary.leftovers_removed == [s3.url("out/report.bin")]
    assert _uploads(s3) == ["other/old.bin", "out/live.bin", "outside.bin"]
    assert s3.get("out/report.bin") is None  # never completed
    assert s3.get("out/a.txt") == b"HELLO"
    assert "left by a killed worker" in caplog.text
    assert summary.as_dict()["leftovers_removed_sample"] == [s3.url("out/report.bin")]


def test_a_longer_lease_keeps_an_idle_s3_upload(
    s3: S3Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "STALE_FLOOR_SECONDS", 1.0)
    slow = s3.client.create_multipart_upload(Bucket=s3.bucket, Key="out/slow.bin")
    s3.client.upload_part(
        Bucket=s3.bucket, Key="out/slow.bin", UploadId=slow["UploadId"], PartNumber=1, Body=b"x" * 1024
    )
    time.sleep(1.5)
    assert _run_flow(tmp_path, s3.location("out", "destination"), lease=60).leftovers_removed == []
    assert _uploads(s3) == ["out/slow.bin"]
    assert _run_flow(tmp_path, s3.location("out", "destination"), lease=1).leftovers_removed == [
        s3.url("out/slow.bin")
    ]


def test_a_failing_sweep_never_fails_the_run(
    s3: S3Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    destination = s3.location("out", "destination")
    s3.client.delete_bucket(Bucket=s3.bucket)
    with caplog.at_level("WARNING"), Publisher(destination, lease_seconds=1) as publisher:
        assert publisher.swept == []
    assert f"Could not sweep stale uploads of destination {s3.url('out')!r}" in caplog.text
