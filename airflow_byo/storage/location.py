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
import logging
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.filesystems import LOCAL_PROTOCOLS, S3_PROTOCOLS, StorageErrors, filesystem, with_retries
from airflow_byo.scratch import TEMP_MARKER, scratch_dir, sweep
from airflow_byo.storage.local_files import (
    LocalOutput,
    list_local,
    open_output_dir,
    open_source_file,
    stage_source_file,
)
from airflow_byo.storage.pending import LocalPending, PendingOutput, S3Pending, SftpPending
from airflow_byo.storage.selection import FileFilter
from airflow_byo.storage.sweeps import STALE_FLOOR_SECONDS, abort_stale_multipart, sweep_remote_dir

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fsspec import AbstractFileSystem

    from airflow_byo.outcomes import StagedOutput

__all__ = ["Location", "PendingOutput", "SourceFile", "StagedInput"]

log = logging.getLogger(__name__)

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
    :param follow_symlinks: read local source files through links that lead outside the
        location (trusted setups only; off by default, see :class:`FileFilter`).
    """

    def __init__(
        self, url: str, conn_id: str | None = None, *, role: str = "location", follow_symlinks: bool = False
    ) -> None:
        if not url or not str(url).strip():
            raise ByoStorageError(f"{role} is empty: give a directory path or URL such as /data/incoming")
        url = str(url).strip()
        self.role = role
        self.conn_id = conn_id or None
        self.follow_symlinks = follow_symlinks
        self._checked_dirs: set[str] = set()  # remote directories known to be no links
        self._made_dirs: set[str] = set()  # remote directories made (or found) by this Location
        self._swept_dirs: set[str] = set()  # remote directories swept of stale temporaries
        #: Idle time after which an upload of unknown writer belongs to no live run (see sweeps).
        self.stale_after = STALE_FLOOR_SECONDS
        #: What killed workers left here and was removed (URLs): by :meth:`sweep_stale_uploads`,
        #: and from each directory SFTP outputs are published to, the first time.
        self.leftovers_removed: list[str] = []
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

    @cached_property
    def _real_root(self) -> str:
        """A local location's real path (created if missing: destinations are made on first use)."""
        if self.role != "source":
            os.makedirs(self.url, exist_ok=True)
        return os.path.realpath(self.url)

    def path_for(self, relative_path: str) -> str:
        return f"{self.root_path}/{relative_path}"

    def url_for(self, relative_path: str) -> str:
        return os.path.join(self.url, relative_path) if self.is_local else f"{self.url}/{relative_path}"

    def _retry(self, operation: Any, action: str) -> Any:
        return with_retries(operation, self.errors, action)

    def _download_options(self) -> dict[str, Any]:
        """
        How one download runs. From S3: one streamed GET (s3fs writes 64 KiB reads to the file as
        they come), not s3fs's default of ranged GETs 10 at a time, each range held in memory
        (50 MiB x 10 per file). A run already downloads ``transfer_concurrency`` files at once,
        so ranges add requests and memory, not speed; against moto's server, where every ranged
        GET reads the whole object, they made a 200 MB download 2-9x slower. Other backends stream.
        """
        return {"max_concurrency": 1} if self.protocol in S3_PROTOCOLS else {}

    def _upload_options(self, size: int) -> dict[str, Any]:
        """
        How one upload runs, memory bounded whatever the file size: s3fs holds chunksize x
        max_concurrency bytes per put (50 MiB x 10 by default); other backends stream.
        """
        if self.protocol not in S3_PROTOCOLS:
            return {}
        return {"chunksize": max(_S3_PART_BYTES, math.ceil(size / _S3_MAX_PARTS)), "max_concurrency": 2}

    # -- listing -------------------------------------------------------------------------------
    def list_files(self, file_filter: FileFilter | None = None) -> list[SourceFile]:
        """
        List the files of the location that pass ``file_filter``, sorted by relative path.

        Only regular files are listed. Symlinks are skipped (with a warning) when they lead outside
        a local location or, on SFTP, whenever the server reports them as links -- unless
        ``file_filter.follow_symlinks``.
        """
        file_filter = file_filter or FileFilter()
        if self.is_local:
            return self._list_local(file_filter)
        root = self.root_path

        def listing() -> dict[str, dict[str, Any]]:
            if file_filter.recursive:
                found = self.fs.find(root, withdirs=False, detail=True)
                return dict(found) if isinstance(found, dict) else {}
            return {e["name"]: e for e in self.fs.ls(root, detail=True) if e.get("type") in ("file", "link")}

        entries = self._retry(listing, "list")
        if not entries and not self._retry(lambda: self.fs.isdir(root), "list"):
            raise self._missing()
        prefix = root.rstrip("/") + "/"
        files = []
        for name, info in entries.items():
            full = name.lstrip("/") if not root.startswith("/") else name
            if not full.startswith(prefix):
                continue
            relative = full[len(prefix) :]
            if info.get("type") == "link":
                if TEMP_MARKER in relative or not file_filter.matches_name(relative):
                    continue
                if not file_filter.follow_symlinks:
                    log.warning(
                        "Skipped %s: the server reports a symbolic link in %s; links are not followed "
                        "unless follow_symlinks=True (trusted sources only)",
                        self.url_for(relative),
                        self.describe(),
                    )
                    continue
                info = self._retry(lambda full=full: self.fs.info(full), "list")  # the link's target
                if info.get("type") != "file":
                    continue
            size, mtime = int(info.get("size") or 0), _mtime(info)
            if file_filter.matches(relative, size, mtime):
                files.append(SourceFile(self.url_for(relative), relative, size, mtime, _etag(info)))
        files.sort(key=lambda f: f.relative_path)
        return files

    def _list_local(self, file_filter: FileFilter) -> list[SourceFile]:
        try:
            entries = list_local(
                self.url, recursive=file_filter.recursive, follow_symlinks=file_filter.follow_symlinks
            )
        except FileNotFoundError:
            raise self._missing() from None
        except NotADirectoryError:
            raise ByoStorageError(
                f"{self.describe()} is not a directory: give the directory of the files"
            ) from None
        except OSError as exc:
            raise self.errors.translate(exc, "list") from None
        files = [
            SourceFile(self.url_for(e.relative_path), e.relative_path, e.size, e.mtime)
            for e in entries
            if file_filter.matches(e.relative_path, e.size, e.mtime)
        ]
        files.sort(key=lambda f: f.relative_path)
        return files

    def _missing(self) -> ByoStorageError:
        return ByoStorageError(
            f"{self.describe()} does not exist"
            + (f" (connection {self.conn_id!r})" if self.conn_id else "")
            + ": create the directory (bucket/prefix) or fix the path"
        )

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
    def stage(
        self, source_file: SourceFile, staging_dir: str, owner: tuple[int, int] | None = None
    ) -> StagedInput:
        """
        ``source_file``'s bytes as a local file in ``staging_dir`` (the only input folder the child
        sees, so it never sees the rest of the source): for a local source a hard link to the file
        or a private copy (see :func:`~airflow_byo.storage.local_files.stage_source_file`), else a
        download (streamed to disk, never held in memory). Released by the caller.

        :param owner: uid/gid of the children (a root worker's sandbox uid): copies and downloads
            are handed to it; ``None`` when they run as the worker's own uid.
        """
        local = os.path.join(staging_dir, f"{uuid.uuid4().hex[:12]}-{source_file.name[-200:]}")
        if self.is_local:
            fd = open_source_file(
                self._real_root, source_file.relative_path, self.url, follow_symlinks=self.follow_symlinks
            )
            try:
                stage_source_file(fd, local, owner)
            except OSError as exc:
                raise self.errors.translate(exc, f"read {source_file.relative_path!r} from") from None
            finally:
                os.close(fd)
            return StagedInput(local, temporary=True)
        try:
            options = self._download_options()
            remote = self.path_for(source_file.relative_path)
            action = f"download {source_file.relative_path!r} from"  # the message names the file
            self._retry(lambda: self.fs.get_file(remote, local, **options), action)
            if owner is not None:
                os.chown(local, *owner)
                os.chmod(local, 0o400)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)
            raise
        return StagedInput(local, temporary=True)

    @contextlib.contextmanager
    def input_staging(self) -> Iterator[str]:
        """
        A private folder for staged inputs, removed afterwards. For a local source it lies on
        the source's file system when it can (the temporary directory if that is the same file
        system, else next to the source), so inputs are hard links, not copies.
        """
        parent = None
        if self.is_local:
            with contextlib.suppress(OSError):
                device = os.stat(self._real_root).st_dev
                for candidate in (tempfile.gettempdir(), os.path.dirname(self._real_root)):
                    if os.stat(candidate).st_dev == device and os.access(candidate, os.W_OK):
                        parent = candidate
                        break
        if parent is not None and parent != tempfile.gettempdir():
            sweep(parent)  # what killed runs left next to this source
        path = scratch_dir("inputs", parent)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # -- outputs -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def output_staging(self) -> Iterator[str]:
        """
        A local directory where the child writes outputs before they are published.

        For a local destination it lies *next to* the destination directory (``<parent>/.byo-
        outputs-<host>-<pid>-*``), on the same file system, so publishing is one atomic ``rename``
        and nothing but final files ever appears in the destination, even if the worker is killed.
        When the parent is another file system (the destination is a mount point) or not writable,
        it is a local temporary directory and publishing copies through an unnamed file. For remote
        destinations it is a local temporary directory. Removed afterwards, whatever happens; the
        leftovers of killed workers of this host are swept first.
        """
        path = scratch_dir("outputs") if not self.is_local else self._local_staging()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _local_staging(self) -> str:
        try:
            os.makedirs(self.url, exist_ok=True)
        except OSError as exc:
            raise self.errors.translate(exc, "create") from None
        real = os.path.realpath(self.url)
        sweep(real)  # staging of releases that staged inside the destination
        parent = os.path.dirname(real)
        if parent != real:
            with contextlib.suppress(OSError):
                if os.stat(parent).st_dev == os.stat(real).st_dev:
                    sweep(parent)
                    return scratch_dir("outputs", parent)
        log.info(
            "Staging outputs in the temporary directory: the parent of %s is another file system or not "
            "writable, so each output is copied into place",
            self.describe(),
        )
        return scratch_dir("outputs")

    def sweep_stale_uploads(self, older_than: float) -> list[str]:
        """
        Remove what killed workers left in a remote destination: incomplete S3 multipart uploads
        under its prefix, and ``.byo-`` temporaries of SFTP uploads in its top directory (deeper
        ones are swept as outputs are published there), when stale (see
        :mod:`~airflow_byo.storage.sweeps`: writer gone, or idle for ``older_than`` seconds).
        Returns what was removed (also logged, and kept in :attr:`leftovers_removed` with what later
        SFTP publishing sweeps). A no-op for local destinations.
        """
        self.stale_after = older_than
        self.leftovers_removed, self._swept_dirs = [], set()
        if self.is_local:
            return []
        if self.protocol in S3_PROTOCOLS:
            return self._sweep(lambda: abort_stale_multipart(self, older_than))
        return self.sweep_directory(self.root_path)

    def sweep_directory(self, directory: str) -> list[str]:
        """Remove the stale SFTP upload temporaries of one directory (once per directory)."""
        if directory in self._swept_dirs:
            return []
        self._swept_dirs.add(directory)
        return self._sweep(lambda: sweep_remote_dir(self, directory, self.stale_after))

    def _sweep(self, sweep: Any) -> list[str]:
        try:
            removed: list[str] = sweep()
        except Exception as exc:  # noqa: BLE001 -- a sweep never fails a run
            log.warning(
                "Could not sweep stale uploads of %s: %s", self.describe(), self.errors.translate(exc)
            )
            return []
        self.leftovers_removed.extend(removed)
        return removed

    def prepare_publish(self, local_path: str | StagedOutput, name: str) -> PendingOutput:
        """
        First half of publishing ``local_path`` -- a taken output (read only through its checked
        descriptor) or a file of the worker's own -- as ``<location>/<name>``: everything that can fail
        before the output becomes visible (checking the name, creating directories, uploading to a
        temporary on SFTP). :meth:`PendingOutput.commit` then makes it visible in one step.
        """
        if self.is_local:
            try:
                fd, leaf = open_output_dir(self._real_root, name, self.describe())
            except OSError as exc:
                raise self.errors.translate(exc, "write") from None
            return LocalPending(self, name, LocalOutput(local_path, fd, leaf))
        if self.protocol in S3_PROTOCOLS:
            if len(self.path_for(name).partition("/")[2].encode()) > 1024:
                raise ByoStorageError(
                    f"cannot write output {name!r} to {self.describe()}: S3 keys are at most 1024 bytes; "
                    "choose a shorter output name"
                )
            return S3Pending(self, name, local_path)
        if any(len(part.encode()) > 255 for part in name.split("/")):
            raise ByoStorageError(
                f"cannot write output {name!r} to {self.describe()}: a file name is longer than 255 "
                "bytes; choose a shorter output name"
            )
        return SftpPending(self, name, local_path)

    def publish(self, local_path: str | StagedOutput, name: str) -> str:
        """
        Make ``local_path`` visible at ``<location>/<name>`` atomically; return the final URL.

        Re-publishing a name overwrites it (so retries never duplicate outputs):

        * local: ``rename`` within the file system, never through a symlinked directory;
        * S3: one PUT, or a multipart upload that only becomes visible when completed (s3fs aborts
          it on failure; a killed worker's is aborted by a later run's sweep);
        * SFTP and others: upload to a temporary name in the target directory, then rename over
          the final name (sshfs uses the atomic ``posix-rename@openssh.com`` extension).
        """
        pending = self.prepare_publish(local_path, name)
        try:
            return pending.commit()
        finally:
            pending.close()

    def make_remote_dir(self, directory: str) -> None:
        """Create an SFTP output directory (and its parents), once per directory."""
        if directory not in self._made_dirs:
            self._retry(lambda: self.fs.makedirs(directory, exist_ok=True), "write")
            self._made_dirs.add(directory)

    def _check_remote_dirs(self, name: str) -> None:
        """Refuse an SFTP output whose directories include a link (each directory checked once)."""
        directory = self.root_path
        for part in name.split("/")[:-1]:
            path = f"{directory}/{part}"
            if path not in self._checked_dirs:
                try:
                    listing = self._retry(
                        lambda directory=directory: self.fs.ls(directory, detail=True), "write"
                    )
                except ByoStorageError as exc:
                    if "does not exist" not in str(exc):
                        raise
                    listing = []
                if any(e["name"].rstrip("/") == path and e.get("type") == "link" for e in listing):
                    raise ByoStorageError(
                        f"cannot write output {name!r}: {path!r} in {self.describe()} is a symlink; a "
                        "destination is never written through links: remove it or choose another output name"
                    )
                self._checked_dirs.add(path)
            directory = path
