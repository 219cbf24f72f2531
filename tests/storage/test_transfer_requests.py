"""
What one transfer asks of the server (issue 17 item 4): an SFTP output directory is made once per
run, not once per file; an S3 download is one streamed GET, not ranged GETs; SFTP connections
prefer AES-GCM unless the connection names its ciphers. Against the real servers.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.filesystems import _ciphers
from airflow_byo.storage import Location
from tests.backends import S3Backend, SftpBackend


def _counting(monkeypatch: pytest.MonkeyPatch, fs: Any, method: str) -> list[Any]:
    """Record the first argument of every call of ``fs.<method>`` (still calling it)."""
    calls: list[Any] = []
    original = getattr(fs, method)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0] if args else None)
        return original(*args, **kwargs)

    monkeypatch.setattr(fs, method, counted)
    return calls


@pytest.fixture
def sftp(sftp_server: Any, connections: Any) -> SftpBackend:
    return SftpBackend(sftp_server, connections("byo_sftp_requests", sftp_server.connection()))


def test_sftp_outputs_make_each_directory_once(
    sftp: SftpBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    destination = sftp.location("out", "destination")
    made = _counting(monkeypatch, destination.fs, "makedirs")
    for index in range(6):
        staged = tmp_path / f"staged-{index}"
        staged.write_bytes(f"output {index}".encode())
        directory = "even" if index % 2 == 0 else "odd/deeper"
        url = destination.publish(str(staged), f"{directory}/part-{index}.txt")
        assert url == sftp.url(f"out/{directory}/part-{index}.txt")
    assert sorted(made) == [destination.path_for("even"), destination.path_for("odd/deeper")]
    for index in range(6):
        directory = "even" if index % 2 == 0 else "odd/deeper"
        assert sftp.get(f"out/{directory}/part-{index}.txt") == f"output {index}".encode()
    assert sftp.names("out") == sorted(
        f"{'even' if i % 2 == 0 else 'odd/deeper'}/part-{i}.txt" for i in range(6)
    )  # no temporaries left


def test_sftp_output_directory_removed_during_a_run_is_made_again(sftp: SftpBackend, tmp_path: Path) -> None:
    destination = sftp.location("out", "destination")
    staged = tmp_path / "staged"
    staged.write_bytes(b"first")
    destination.publish(str(staged), "day/a.txt")
    shutil.rmtree(sftp.root / "out" / "day")  # e.g. a clean-up job between two files of a run
    staged.write_bytes(b"second")
    destination.publish(str(staged), "day/b.txt")
    assert sftp.get("out/day/b.txt") == b"second"
    assert sftp.names("out") == ["day/b.txt"]


def test_sftp_upload_streams_a_file_bigger_than_one_write(sftp: SftpBackend, tmp_path: Path) -> None:
    payload = bytes(range(256)) * (41 * 1024)  # ~10 MiB: several 4 MiB writes, an uneven tail
    staged = tmp_path / "big.bin"
    staged.write_bytes(payload)
    sftp.location("out", "destination").publish(str(staged), "big.bin")
    assert sftp.get("out/big.bin") == payload


def test_sftp_prefers_aes_gcm(sftp: SftpBackend) -> None:
    client = sftp.location("in", "source").fs.client
    assert client.get_extra_info("send_cipher") == "aes256-gcm@openssh.com"
    assert client.get_extra_info("recv_cipher") == "aes256-gcm@openssh.com"


def test_sftp_connection_ciphers_extra_is_honoured(sftp_server: Any, connections: Any) -> None:
    conn_id = connections("byo_sftp_ctr", sftp_server.connection(ciphers=["aes128-ctr"]))
    backend = SftpBackend(sftp_server, conn_id)
    assert backend.location("in", "source").fs.client.get_extra_info("send_cipher") == "aes128-ctr"


@pytest.mark.parametrize(
    ("configured", "first"),
    [
        (None, "aes256-gcm@openssh.com"),
        ([], "aes256-gcm@openssh.com"),
        (["aes128-ctr", "aes256-ctr"], "aes128-ctr"),
        ("aes192-ctr, aes128-ctr", "aes192-ctr"),
    ],
)
def test_cipher_preference(configured: Any, first: str) -> None:
    ciphers = _ciphers(configured)
    assert ciphers[0] == first
    assert all(isinstance(name, str) and name for name in ciphers)


def test_s3_download_is_one_streamed_get(
    s3_server: Any, connections: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = S3Backend(s3_server, connections("byo_s3_requests", s3_server.connection()))
    payload = bytes(range(256)) * (80 * 1024)  # 20 MiB: more than one part of any chunk size used
    backend.put("in/big.bin", payload)
    source: Location = backend.location("in", "source")
    [file] = source.list_files()
    calls: list[tuple[str, str | None]] = []
    original = source.fs._call_s3

    async def counted(method: str, *args: Any, **kwargs: Any) -> Any:
        calls.append((method, kwargs.get("Range")))
        return await original(method, *args, **kwargs)

    monkeypatch.setattr(source.fs, "_call_s3", counted)
    staged = source.stage(file, str(tmp_path))
    assert Path(staged.path).read_bytes() == payload
    assert calls == [("get_object", None)]
    staged.release()
