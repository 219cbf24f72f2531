"""
Outputs on their way into a destination, in two steps: *prepare* everything that can fail while
nothing is visible yet (names, directories, SFTP uploads to a temporary), then *commit* each in one
atomic step (rename, PUT, posix-rename). The :class:`~airflow_byo.storage.publisher.Publisher`
prepares all outputs of an input file before committing any, and retracts the committed ones when
a later one fails, so a file's outputs are published all or nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import TYPE_CHECKING

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.storage.local_files import open_staged_source
from airflow_byo.storage.sweeps import upload_temporary

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from airflow_byo.outcomes import StagedOutput
    from airflow_byo.storage.local_files import LocalOutput
    from airflow_byo.storage.location import Location

__all__ = ["LocalPending", "PendingOutput", "S3Pending", "SftpPending"]


class PendingOutput:
    """An output prepared by :meth:`Location.prepare_publish`: commit it, or abort/retract it."""

    def __init__(self, location: Location, name: str) -> None:
        self.location, self.name = location, name
        self.committed = False

    def commit(self) -> str:
        """Make the output visible under its final name; return its URL."""
        try:
            self._commit()
        except OSError as exc:
            raise self.location.errors.translate(exc, "write") from None
        except ByoStorageError:
            raise
        self.committed = True
        return self.location.url_for(self.name)

    def retract(self) -> None:
        """Remove the committed output again (another output of the same input failed)."""
        if self.committed:
            self._retract()
            self.committed = False

    def close(self) -> None:
        """Drop what an uncommitted output left (a temporary); release handles."""

    def _commit(self) -> None:
        raise NotImplementedError

    def _retract(self) -> None:
        raise NotImplementedError


class LocalPending(PendingOutput):
    def __init__(self, location: Location, name: str, output: LocalOutput) -> None:
        super().__init__(location, name)
        self.output = output

    def _commit(self) -> None:
        self.output.commit()

    def _retract(self) -> None:
        self.output.retract()

    def close(self) -> None:
        self.output.close()


class S3Pending(PendingOutput):
    def __init__(self, location: Location, name: str, source: str | StagedOutput) -> None:
        super().__init__(location, name)
        self.source = source

    def _commit(self) -> None:
        location, final = self.location, self.location.path_for(self.name)
        fd = open_staged_source(self.source)  # s3fs opens paths: it gets this checked file's
        try:
            local = f"/proc/self/fd/{fd}"
            options = location._upload_options(os.fstat(fd).st_size)
            location._retry(lambda: location.fs.put_file(local, final, **options), "write")
        finally:
            os.close(fd)

    def _retract(self) -> None:
        final = self.location.path_for(self.name)
        self.location._retry(lambda: self.location.fs.rm_file(final), "delete")


#: Bytes per write of an SFTP upload: asyncssh pipelines each write as parallel requests, so
#: this bounds the upload's memory; 4 MiB streams as fast as sshfs's put_file (measured).
_SFTP_WRITE_BYTES = 4 * 1024 * 1024


def _sftp_upload(fs: AbstractFileSystem, source: str | StagedOutput, remote_path: str, parent: str) -> None:
    """
    Stream ``source`` to ``remote_path``: one open, pipelined writes, one close. sshfs's
    ``put_file`` also runs ``makedirs`` of the parent (two requests per path component) and a
    ``stat`` for every file, which cost more than the data of a 1 MB file; the parent is made once
    per run instead (:meth:`Location.make_remote_dir`), and again only if it vanished.
    """
    try:
        target = fs.open(remote_path, "wb")
    except FileNotFoundError:
        fs.makedirs(parent, exist_ok=True)
        target = fs.open(remote_path, "wb")
    with open(open_staged_source(source), "rb") as local, target:
        shutil.copyfileobj(local, target, _SFTP_WRITE_BYTES)


class SftpPending(PendingOutput):
    """Uploaded to a temporary next to the final name when prepared; renamed over it on commit."""

    def __init__(self, location: Location, name: str, source: str | StagedOutput) -> None:
        super().__init__(location, name)
        final = location.path_for(name)
        self.tmp: str | None = upload_temporary(final)
        parent = final.rsplit("/", 1)[0]
        fs = location.fs
        try:
            location._check_remote_dirs(name)
            location.make_remote_dir(parent)
            location.sweep_directory(parent)  # what killed workers left there (see sweeps)
            tmp = self.tmp
            location._retry(lambda: _sftp_upload(fs, source, tmp, parent), "write")
        except BaseException:
            self.close()
            raise

    def _commit(self) -> None:
        fs, final = self.location.fs, self.location.path_for(self.name)
        self.location._retry(lambda: fs.mv(self.tmp, final), "write")
        self.tmp = None

    def _retract(self) -> None:
        final = self.location.path_for(self.name)
        self.location._retry(lambda: self.location.fs.rm_file(final), "delete")

    def close(self) -> None:
        if self.tmp is not None:
            with contextlib.suppress(Exception):
                self.location.fs.rm_file(self.tmp)
            self.tmp = None
