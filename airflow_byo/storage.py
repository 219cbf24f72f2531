"""
Sources and destinations: one module over ``ObjectStoragePath``/fsspec for every file system.

A :class:`Location` is a URL (``/data/in``, ``file:///data/in``, ``s3://bucket/in/``,
``sftp:///incoming/``) plus an optional Airflow connection id. It lists files with filters, stages
inputs as local files for the child, and publishes outputs atomically: a reader of the
destination sees either no file or a complete one, never a partial write.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoStorageError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from fsspec import AbstractFileSystem

__all__ = ["TEMP_MARKER", "Location", "SourceFile"]

#: Every temporary name airflow-byo creates contains this marker; listings skip such paths.
TEMP_MARKER = ".byo-"


@dataclass(frozen=True)
class SourceFile:
    """A file found in a source listing."""

    url: str
    relative_path: str
    size: int
    mtime: float | None

    @property
    def name(self) -> str:
        return self.relative_path.rsplit("/", 1)[-1]


def _matches(relative_path: str, patterns: Sequence[str]) -> bool:
    name = relative_path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(relative_path, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _mtime(info: dict[str, Any]) -> float | None:
    value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


class Location:
    """
    A directory on some file system, addressed by URL and (optionally) an Airflow connection.

    :param url: local path or URL of the directory.
    :param conn_id: Airflow connection holding the credentials for ``url`` (not used for local paths).
    :param role: ``"source"`` or ``"destination"``; only used in error messages.
    """

    def __init__(self, url: str, conn_id: str | None = None, *, role: str = "location") -> None:
        if not url or not str(url).strip():
            raise ByoStorageError(f"{role} is empty: give a directory path or URL such as /data/incoming")
        url = str(url)
        self.role = role
        self.conn_id = conn_id or None
        if url.startswith("file://"):
            url = url[len("file://") :]
        if "://" not in url:
            url = os.path.abspath(os.path.expanduser(url))
        #: The location as users wrote it, normalised: an absolute path for local directories.
        self.url = url.rstrip("/") or "/"
        from airflow.sdk import ObjectStoragePath

        try:
            fs_url = self.url if "://" in self.url else f"file://{self.url}"
            self.root = ObjectStoragePath(fs_url, conn_id=self.conn_id)
        except Exception as exc:  # noqa: BLE001 - unknown scheme, missing fsspec extra, bad conn id ...
            raise ByoStorageError(f"{role} {self.url!r} cannot be opened: {exc}") from None
        self.protocol = self.root.protocol or "file"

    # -- introspection -------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.protocol in ("file", "local")

    @property
    def local_root(self) -> str:
        """Absolute local path of a local location."""
        if not self.is_local:
            raise ByoStorageError(f"{self.role} {self.url!r} is not on the local file system")
        return self.url

    @property
    def fs(self) -> AbstractFileSystem:
        return self.root.fs

    @property
    def root_path(self) -> str:
        """The location's path as the file system names it (no scheme)."""
        return self.local_root if self.is_local else self.root.path.rstrip("/")

    def describe(self) -> str:
        return f"{self.role} {self.url!r}" + (f" (connection {self.conn_id!r})" if self.conn_id else "")

    def url_for(self, relative_path: str) -> str:
        return (
            f"{self.url}/{relative_path}"
            if not self.is_local
            else os.path.join(self.local_root, relative_path)
        )

    # -- listing -------------------------------------------------------------------------------
    def list_files(
        self,
        include: Sequence[str] = ("*",),
        exclude: Sequence[str] = (),
        *,
        recursive: bool = True,
    ) -> list[SourceFile]:
        """
        List files under the location, sorted by relative path.

        Patterns are ``fnmatch`` globs matched against the path relative to the location and
        against the bare file name (``*.csv`` matches ``a.csv`` and ``2024/a.csv``).
        """
        root = self.root_path
        try:
            if recursive:
                entries = self.fs.find(root, withdirs=False, detail=True)
            else:
                entries = {e["name"]: e for e in self.fs.ls(root, detail=True) if e.get("type") == "file"}
        except FileNotFoundError:
            raise ByoStorageError(
                f"{self.describe()} does not exist: create the directory or fix the path"
            ) from None
        except PermissionError as exc:
            raise ByoStorageError(f"{self.describe()} cannot be listed: permission denied ({exc})") from None
        if not self.fs.isdir(root) and not entries:
            raise ByoStorageError(f"{self.describe()} does not exist: create the directory or fix the path")
        prefix = root.rstrip("/") + "/"
        files = []
        for name, info in entries.items():
            name = name if not self.is_local else os.path.normpath(name)
            if not name.startswith(prefix):
                continue
            relative = name[len(prefix) :]
            if TEMP_MARKER in relative or not _matches(relative, include) or _matches(relative, exclude):
                continue
            files.append(
                SourceFile(
                    url=self.url_for(relative),
                    relative_path=relative,
                    size=int(info.get("size") or 0),
                    mtime=_mtime(info),
                )
            )
        files.sort(key=lambda f: f.relative_path)
        return files

    def file_info(self, relative_path: str) -> SourceFile:
        """Describe one file of the location (used by test mode for a single sample file)."""
        path = f"{self.root_path}/{relative_path}"
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            raise ByoStorageError(
                f"file {self.url_for(relative_path)!r} does not exist in {self.describe()}"
            ) from None
        if info.get("type") != "file":
            raise ByoStorageError(f"{self.url_for(relative_path)!r} is not a file; give the path of one file")
        return SourceFile(
            url=self.url_for(relative_path),
            relative_path=relative_path,
            size=int(info.get("size") or 0),
            mtime=_mtime(info),
        )

    # -- inputs --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def staged(self, source_file: SourceFile, staging_dir: str) -> Iterator[str]:
        """Yield a local path holding ``source_file``'s bytes (the file itself when local)."""
        if self.is_local:
            yield os.path.join(self.local_root, source_file.relative_path)
            return
        local = os.path.join(staging_dir, f"{uuid.uuid4().hex}-{source_file.name}")
        try:
            self.fs.get_file(f"{self.root_path}/{source_file.relative_path}", local)
            yield local
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)

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
            os.makedirs(self.local_root, exist_ok=True)
            path = tempfile.mkdtemp(prefix=f"{TEMP_MARKER}staging-", dir=self.local_root)
        else:
            path = tempfile.mkdtemp(prefix=f"{TEMP_MARKER}staging-")
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def publish(self, local_path: str, name: str) -> str:
        """
        Make ``local_path`` visible at ``<location>/<name>`` atomically; return the final URL.

        Local: rename within the file system. S3: one PUT or a completed multipart upload (S3
        never shows an incomplete object). Other file systems: upload to a temporary name in the
        target directory, then rename over the final name.
        """
        if self.is_local:
            final = os.path.join(self.local_root, name)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            try:
                os.replace(local_path, final)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise ByoStorageError(f"cannot write {final!r} in {self.describe()}: {exc}") from None
                tmp = _temp_sibling(final)
                shutil.copyfile(local_path, tmp)
                os.replace(tmp, final)
            return final
        final = f"{self.root_path}/{name}"
        try:
            if self.protocol in ("s3", "s3a"):
                self.fs.put_file(local_path, final)
            else:
                tmp = _temp_sibling(final)
                self.fs.put_file(local_path, tmp)
                self.fs.mv(tmp, final)
        except Exception as exc:  # noqa: BLE001 - every backend raises its own error types
            raise ByoStorageError(f"cannot write {name!r} to {self.describe()}: {exc}") from None
        return self.url_for(name)


def _temp_sibling(final: str) -> str:
    head, _, tail = final.rpartition("/")
    return f"{head}/{TEMP_MARKER}{uuid.uuid4().hex[:12]}-{tail}"
