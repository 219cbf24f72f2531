"""
What every backend shares (airflow_byo.storage.backends.base), on local, S3 (moto server) and SFTP
(sshd): what does not exist is a ByoNotFoundError, so callers test the type, never the message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoNotFoundError
from tests.backends import Backend


def test_file_info_of_a_missing_file_is_not_found(backend: Backend) -> None:
    backend.put("in/a.csv", b"1")
    with pytest.raises(ByoNotFoundError, match=r"^file '.*/in/missing\.csv' does not exist$"):
        backend.location("in").file_info("missing.csv")


def test_listing_a_missing_directory_is_not_found(backend: Backend) -> None:
    backend.put("elsewhere/a.csv", b"1")
    with pytest.raises(ByoNotFoundError, match=r"^source '.*/nowhere' does not exist"):
        backend.location("nowhere", "source").list_files()


def test_staging_a_file_gone_since_the_listing_is_not_found(backend: Backend, tmp_path: Path) -> None:
    backend.put("in/a.csv", b"1")
    source = backend.location("in", "source")
    [file] = source.list_files()
    backend.delete("in/a.csv")
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(ByoNotFoundError):
        source.stage(file, str(staging))
    assert list(staging.iterdir()) == []  # nothing half-staged
