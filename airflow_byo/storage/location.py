"""
Sources and destinations: a :class:`Location` is one directory on any storage, addressed by URL.

A Location is a URL (``/data/in``, ``file:///data/in``, ``s3://bucket/in/``, ``sftp:///incoming/``)
plus an optional Airflow connection id. It parses the URL, picks the backend registered for its
scheme (:mod:`airflow_byo.storage.backends`) and delegates each step to it: listing with filters,
staging inputs as local files for the child, and writing one file atomically -- a reader of the
destination sees either no file or a complete one, never a partial write. What a run does with a
file's outputs (names, quarantine, final URLs) is :mod:`airflow_byo.storage.publisher`'s job.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from typing import TYPE_CHECKING

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.storage.backends import backend_class
from airflow_byo.storage.backends.base import PendingOutput, SourceFile, StagedInput
from airflow_byo.storage.selection import FileFilter

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fsspec import AbstractFileSystem

    from airflow_byo.filesystems import StorageErrors
    from airflow_byo.results import StagedOutput
    from airflow_byo.storage.backends import Backend

# SourceFile and StagedInput are defined with the backends that make them; named here as well,
# where the runner and the ledger have always imported them.
__all__ = ["Location", "SourceFile", "StagedInput"]


class Location:
    """
    A directory on some storage, addressed by URL and (optionally) an Airflow connection.

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
        url = str(url).strip().removeprefix("file://")
        if "://" in url:
            protocol = url.split("://", 1)[0].lower()
        else:
            protocol = "file"
            url = os.path.abspath(os.path.expanduser(url))
        #: The backend of the URL's scheme, which does the work.
        self.backend: Backend = backend_class(protocol)(
            url.rstrip("/") or "/", protocol, conn_id or None, role=role, follow_symlinks=follow_symlinks
        )

    # -- introspection: read-only views of the backend's attributes, one per name on purpose (the
    # rest of the code reads them from the Location and never sets them) ------------------------
    @property
    def url(self) -> str:
        """The location as users wrote it, normalised: an absolute path for local directories."""
        return self.backend.url

    @property
    def protocol(self) -> str:
        return self.backend.protocol

    @property
    def conn_id(self) -> str | None:
        return self.backend.conn_id

    @property
    def role(self) -> str:
        return self.backend.role

    @property
    def follow_symlinks(self) -> bool:
        return self.backend.follow_symlinks

    @property
    def is_local(self) -> bool:
        return self.backend.is_local

    def describe(self) -> str:
        return self.backend.describe()

    @property
    def fs(self) -> AbstractFileSystem:
        return self.backend.fs

    @property
    def errors(self) -> StorageErrors:
        return self.backend.errors

    @property
    def root_path(self) -> str:
        """The location's path as its file system names it (no scheme, no trailing slash)."""
        return self.backend.root_path

    def path_for(self, relative_path: str) -> str:
        return self.backend.path_for(relative_path)

    def url_for(self, relative_path: str) -> str:
        return self.backend.url_for(relative_path)

    # -- inputs --------------------------------------------------------------------------------
    def list_files(self, file_filter: FileFilter | None = None) -> list[SourceFile]:
        """
        List the files of the location that pass ``file_filter``, sorted by relative path.

        Only regular files are listed. Symlinks are skipped (with a warning) when they lead outside
        a local location or, on SFTP, whenever the server reports them as links -- unless
        ``file_filter.follow_symlinks``.
        """
        return self.backend.list_files(file_filter or FileFilter())

    def file_info(self, relative_path: str) -> SourceFile:
        """Describe one file of the location (used by test mode for a single sample file)."""
        return self.backend.file_info(relative_path)

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
        return self.backend.stage(source_file, local, owner)

    @contextlib.contextmanager
    def input_staging(self) -> Iterator[str]:
        """
        A private folder for staged inputs, removed afterwards. For a local source it lies on
        the source's file system when it can, so inputs are hard links, not copies.
        """
        path = self.backend.make_input_staging()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # -- outputs -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def output_staging(self) -> Iterator[str]:
        """
        A local directory where the child writes outputs before they are published: for a local
        destination next to it, on the same file system, so publishing is one atomic ``rename``
        (see :mod:`~airflow_byo.storage.backends.local`); else a local temporary directory.
        Removed afterwards, whatever happens.
        """
        path = self.backend.make_output_staging()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @property
    def leftovers_removed(self) -> list[str]:
        """What killed workers left here and was removed (URLs), since :meth:`sweep_stale_uploads`."""
        return self.backend.leftovers_removed

    def sweep_stale_uploads(self, older_than: float) -> list[str]:
        """
        Remove what killed workers left in a remote destination: incomplete S3 multipart uploads
        under its prefix, and ``.byo-`` temporaries of SFTP uploads in its top directory (deeper
        ones are swept as outputs are published there), when stale (writer gone, or idle for
        ``older_than`` seconds). Returns what was removed (also logged, and kept in
        :attr:`leftovers_removed` with what later publishing sweeps). A no-op for local destinations.
        """
        return self.backend.sweep_stale_uploads(older_than)

    def prepare_publish(self, local_path: str | StagedOutput, name: str) -> PendingOutput:
        """
        First half of publishing ``local_path`` -- a taken output (read only through its checked
        descriptor) or a file of the worker's own -- as ``<location>/<name>``: everything that can fail
        before the output becomes visible (checking the name, creating directories, uploading to a
        temporary on SFTP). :meth:`PendingOutput.commit` then makes it visible in one step.
        """
        return self.backend.prepare_publish(local_path, name)

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
