"""
Sources and destinations: one class over fsspec for every file system (local, S3, SFTP, ...).

A :class:`Location` is a URL (``/data/in``, ``file:///data/in``, ``s3://bucket/in/``,
``sftp:///incoming/``) plus an optional Airflow connection id. It lists files with filters,
stages inputs as local files for the child, and writes one file atomically: a reader of the
destination sees either no file or a complete one, never a partial write. What a run does with
a file's outputs (names, quarantine, final URLs) is :mod:`airflow_byo.storage.publisher`'s job.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.filesystems import LOCAL_PROTOCOLS, S3_PROTOCOLS, StorageErrors, filesystem, with_retries
from airflow_byo.scratch import TEMP_MARKER, scratch_dir, sweep
from airflow_byo.storage.selection import FileFilter

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fsspec import AbstractFileSystem

__all__ = ["Location", "SourceFile", "StagedInput"]

_S3_PART_BYTES = 8 * 1024 * 1024
_S3_MAX_PARTS = 10_000


@dataclass(frozen=True)
class SourceFile:
    """A file found in a source listing."""

    url: str
    relative_path: str
    size: int
    mtime: float | None
    etag: str | None = None

    @property
    def name(self) -> str:
        return self.relative_path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class StagedInput:
    """
    A source file as a local path the child can read: the file itself for a local source, else
    a temporary download. :meth:`release` is the one place that decides what to delete.
    """

    path: str
    temporary: bool

    def release(self) -> None:
        if self.temporary:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _mtime(info: dict[str, Any]) -> float | None:
    value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def _etag(info: dict[str, Any]) -> str | None:
    value = info.get("ETag") or info.get("etag")
    return str(value).strip('"') if value else None


class Location:
    """
    A directory on some file system, addressed by URL and (optionally) an Airflow connection.

    The file system is created (and, for SFTP, connected) on first use, so building a Location
    costs nothing at DAG-parse time.

    :param url: local path or URL of the directory.
    :param conn_id: Airflow connection holding the credentials for ``url`` (unused for local paths).
    :param role: ``"source"``, ``"destination"``...; only used in messages.
    """

    def __init__(self, url: str, conn_id: str | None = None, *, role: str = "location") -> None:
        if not url or not str(url).strip():
            raise ByoStorageError(f"{role} is empty: give a directory path or URL such as /data/incoming")
        url = str(url).strip()
        self.role = role
        self.conn_id = conn_id or None
        url = url.removeprefix("file://")
        if "://" in url:
            self.protocol = url.split("://", 1)[0].lower()
        else:
            self.protocol = "file"
            url = os.path.abspath(os.path.expanduser(url))
        #: The location as users wrote it, normalised: an absolute path for local directories.
        self.url = url.rstrip("/") or "/"

    # -- introspection -------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.protocol in LOCAL_PROTOCOLS

    def describe(self) -> str:
        return f"{self.role} {self.url!r}"

    @cached_property
    def _fs_and_errors(self) -> tuple[AbstractFileSystem, StorageErrors]:
        return filesystem(self.protocol, None if self.is_local else self.conn_id, self.describe())

    @property
    def fs(self) -> AbstractFileSystem:
        return self._fs_and_errors[0]

    @property
    def errors(self) -> StorageErrors:
        return self._fs_and_errors[1]

    @cached_property
    def root_path(self) -> str:
        """The location's path as its file system names it (no scheme, no trailing slash)."""
        if self.is_local:
            return self.url
        stripped = self.fs._strip_protocol(self.url + "/")
        path = str(stripped[0] if isinstance(stripped, list) else stripped).rstrip("/")
        if self.protocol not in S3_PROTOCOLS and not path.startswith("/"):
            path = "/" + path  # sftp:///incoming -> /incoming
        return path

    def path_for(self, relative_path: str) -> str:
        return f"{self.root_path}/{relative_path}"

    def url_for(self, relative_path: str) -> str:
        return os.path.join(self.url, relative_path) if self.is_local else f"{self.url}/{relative_path}"

    def _retry(self, operation: Any, action: str) -> Any:
        return with_retries(operation, self.errors, action)

    def _transfer_options(self, size: int) -> dict[str, Any]:
        """
        Keep one transfer's memory bounded whatever the file size. s3fs holds up to chunksize x
        max_concurrency bytes per get/put (50 MiB x 10 by default); other backends stream.
        """
        if self.protocol not in S3_PROTOCOLS:
            return {}
        return {"chunksize": max(_S3_PART_BYTES, math.ceil(size / _S3_MAX_PARTS)), "max_concurrency": 2}

    # -- listing -------------------------------------------------------------------------------
    def list_files(self, file_filter: FileFilter | None = None) -> list[SourceFile]:
        """List the files of the location that pass ``file_filter``, sorted by relative path."""
        file_filter = file_filter or FileFilter()
        root = self.root_path

        def listing() -> dict[str, dict[str, Any]]:
            if file_filter.recursive:
                found = self.fs.find(root, withdirs=False, detail=True)
                return dict(found) if isinstance(found, dict) else {}
            return {e["name"]: e for e in self.fs.ls(root, detail=True) if e.get("type") == "file"}

        entries = self._retry(listing, "list")
        if not entries and not self._retry(lambda: self.fs.isdir(root), "list"):
            raise ByoStorageError(
                f"{self.describe()} does not exist"
                + (f" (connection {self.conn_id!r})" if self.conn_id else "")
                + ": create the directory (bucket/prefix) or fix the path"
            )
        prefix = root.rstrip("/") + "/"
        files = []
        for name, info in entries.items():
            full = (
                os.path.normpath(name)
                if self.is_local
                else name.lstrip("/")
                if not root.startswith("/")
                else name
            )
            if not full.startswith(prefix):
                continue
            relative = full[len(prefix) :]
            size, mtime = int(info.get("size") or 0), _mtime(info)
            if file_filter.matches(relative, size, mtime):
                files.append(SourceFile(self.url_for(relative), relative, size, mtime, _etag(info)))
        files.sort(key=lambda f: f.relative_path)
        return files

    def file_info(self, relative_path: str) -> SourceFile:
        """Describe one file of the location (used by test mode for a single sample file)."""
        try:
            info = self._retry(lambda: self.fs.info(self.path_for(relative_path)), "read")
        except ByoStorageError as exc:
            if "does not exist" in str(exc):
                raise ByoStorageError(f"file {self.url_for(relative_path)!r} does not exist") from None
            raise
        if info.get("type") != "file":
            raise ByoStorageError(f"{self.url_for(relative_path)!r} is not a file; give the path of one file")
        return SourceFile(
            self.url_for(relative_path), relative_path, int(info.get("size") or 0), _mtime(info), _etag(info)
        )

    # -- inputs --------------------------------------------------------------------------------
    def stage(self, source_file: SourceFile, staging_dir: str) -> StagedInput:
        """
        ``source_file``'s bytes as a local file: the file itself when local, else a download into
        ``staging_dir`` (streamed to disk, never held in memory; released by the caller).
        """
        if self.is_local:
            return StagedInput(os.path.join(self.url, source_file.relative_path), temporary=False)
        local = os.path.join(staging_dir, f"{uuid.uuid4().hex[:12]}-{source_file.name}")
        try:
            options = self._transfer_options(source_file.size)
            remote = self.path_for(source_file.relative_path)
            self._retry(lambda: self.fs.get_file(remote, local, **options), "download")
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)
            raise
        return StagedInput(local, temporary=True)

    # -- outputs -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def output_staging(self) -> Iterator[str]:
        """
        A local directory where the child writes outputs before they are published.

        For a local destination it lies inside the destination, so publishing is one atomic
        ``rename`` on the same file system; for remote ones it is a local temporary directory.
        Removed afterwards, whatever happens.
        """
        if self.is_local:
            try:
                os.makedirs(self.url, exist_ok=True)
            except OSError as exc:
                raise self.errors.translate(exc, "create") from None
            sweep(self.url)
            path = scratch_dir("outputs", self.url)
        else:
            path = scratch_dir("outputs")
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def publish(self, local_path: str, name: str) -> str:
        """
        Make ``local_path`` visible at ``<location>/<name>`` atomically; return the final URL.

        Re-publishing a name overwrites it (so retries never duplicate outputs):

        * local: ``rename`` within the file system;
        * S3: one PUT, or a multipart upload that only becomes visible when completed (s3fs aborts
          it on failure);
        * SFTP and others: upload to a temporary name in the target directory, then rename over
          the final name (sshfs uses the atomic ``posix-rename@openssh.com`` extension).
        """
        if self.is_local:
            self._publish_local(local_path, os.path.join(self.url, name))
            return self.url_for(name)
        final = self.path_for(name)
        if self.protocol in S3_PROTOCOLS:
            options = self._transfer_options(os.path.getsize(local_path))
            self._retry(lambda: self.fs.put_file(local_path, final, **options), "write")
            return self.url_for(name)
        tmp = _temp_sibling(final)
        parent = final.rsplit("/", 1)[0]
        try:
            self._retry(lambda: self.fs.makedirs(parent, exist_ok=True), "write")
            self._retry(lambda: self.fs.put_file(local_path, tmp), "write")
            self._retry(lambda: self.fs.mv(tmp, final), "write")
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm_file(tmp)
            raise
        return self.url_for(name)

    def _publish_local(self, local_path: str, final: str) -> None:
        try:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            try:
                os.replace(local_path, final)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                tmp = _temp_sibling(final)
                shutil.copyfile(local_path, tmp)
                os.replace(tmp, final)
        except OSError as exc:
            raise self.errors.translate(exc, "write") from None


def _temp_sibling(final: str) -> str:
    head, _, tail = final.rpartition("/")
    return f"{head}/{TEMP_MARKER}{uuid.uuid4().hex[:12]}-{tail}"
