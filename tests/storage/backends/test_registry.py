"""
The backend registry (airflow_byo.storage.backends): a Location takes the backend registered for
its URL's scheme -- one defined outside airflow_byo.storage too -- any other scheme gets the
generic fsspec backend, and a scheme whose file system is not installed names what to install.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from airflow_byo.exceptions import ByoConfigError, ByoNotFoundError, ByoStorageError
from airflow_byo.filesystems import StorageErrors
from airflow_byo.storage import TEMP_MARKER, FileFilter, Location
from airflow_byo.storage.backends import backend_class, register_backend
from airflow_byo.storage.backends.generic import GenericBackend
from airflow_byo.storage.backends.local import LocalBackend
from airflow_byo.storage.backends.s3 import S3Backend
from airflow_byo.storage.backends.sftp import SftpBackend


@register_backend
class MemoryBackend(GenericBackend):
    """fsspec's in-memory file system under a made-up scheme: a backend of this test module alone."""

    protocols = ("byo-test-memory",)

    def connect(self) -> Any:
        return MemoryFileSystem(), StorageErrors(self.describe(), None, [])

    @property
    def root_path(self) -> str:
        return "/" + self.url.split("://", 1)[1].strip("/")


def test_each_scheme_has_its_backend() -> None:
    assert type(Location("/data/in").backend) is LocalBackend
    assert type(Location("file:///data/in").backend) is LocalBackend
    assert [backend_class(s) for s in ("s3", "s3a", "s3n")] == [S3Backend] * 3
    assert [backend_class(s) for s in ("sftp", "ssh")] == [SftpBackend] * 2
    assert type(Location("gs://bucket/in").backend) is GenericBackend  # any other scheme


def test_a_backend_registered_outside_the_storage_package_is_picked(tmp_path: Path) -> None:
    memory = MemoryFileSystem()
    memory.pipe({"/registry-test/in/a.txt": b"alpha", "/registry-test/in/sub/b.csv": b"beta"})
    source = Location("byo-test-memory://registry-test/in", role="source")
    assert isinstance(source.backend, MemoryBackend)
    assert not source.is_local
    files = source.list_files(FileFilter(include=("*.txt", "*.csv")))
    assert [(f.relative_path, f.size, f.url) for f in files] == [
        ("a.txt", 5, "byo-test-memory://registry-test/in/a.txt"),
        ("sub/b.csv", 4, "byo-test-memory://registry-test/in/sub/b.csv"),
    ]
    staged = source.stage(files[0], str(tmp_path))
    assert Path(staged.path).read_bytes() == b"alpha"

    destination = Location("byo-test-memory://registry-test/out", role="destination")
    payload = tmp_path / "payload"
    payload.write_bytes(b"published")
    assert (
        destination.publish(str(payload), "by_day/x.txt")
        == "byo-test-memory://registry-test/out/by_day/x.txt"
    )
    assert memory.cat("/registry-test/out/by_day/x.txt") == b"published"
    assert not [p for p in memory.find("/registry-test/out") if TEMP_MARKER in p]
    with pytest.raises(
        ByoNotFoundError, match=r"file 'byo-test-memory://registry-test/in/gone\.txt' does not exist"
    ):
        source.file_info("gone.txt")


def test_a_scheme_served_already_is_not_taken_over_silently() -> None:
    class Impostor(LocalBackend):
        protocols = ("s3",)

    with pytest.raises(ByoConfigError, match=r"'s3://' is served by S3Backend already; .*clobber=True"):
        register_backend(Impostor)
    assert backend_class("s3") is S3Backend
    register_backend(MemoryBackend)  # the same backend again: nothing changes


# -- a file system that is not installed ----------------------------------------------------------


def test_a_scheme_without_a_file_system_names_what_to_install() -> None:
    with pytest.raises(ByoStorageError) as raised:
        Location("byo-nothing://bucket/in", role="source").list_files()
    assert str(raised.value) == (
        "source 'byo-nothing://bucket/in': no file system is installed for 'byo-nothing://'; "
        "install the provider that registers it"
    )


def test_a_missing_s3_extra_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, connections: Any
) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if the [s3fs] extra were not installed
    conn_id = connections("byo_s3_no_extra", {"conn_type": "aws", "login": "key", "password": "secret"})
    with pytest.raises(
        ByoStorageError,
        match=r"source 's3://bucket/in': .*pip install apache-airflow-providers-amazon\[s3fs\]",
    ):
        Location("s3://bucket/in", conn_id, role="source").list_files()


def test_a_missing_provider_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.sdk.io

    def no_provider(scheme: str, *args: Any) -> Any:  # what Airflow says for a scheme nobody registers
        raise ValueError(f"No filesystem registered for scheme {scheme}")

    monkeypatch.setattr(airflow.sdk.io, "get_fs", no_provider)
    with pytest.raises(ByoStorageError) as raised:
        Location("sftp:///incoming", role="source").list_files()
    assert str(raised.value) == (
        "source 'sftp:///incoming': no file system is installed for 'sftp://'; "
        "pip install 'apache-airflow-providers-sftp[sshfs]'"
    )
