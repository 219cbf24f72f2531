"""
Local directories (paths and ``file://`` URLs), through descriptors
(:mod:`airflow_byo.storage.local_files` holds the checks: ``O_NOFOLLOW``, the real path of what
is opened, a hard link of the checked descriptor).

* **Reading**: the child is given a hard link to the checked file, or a private copy, in a
  staging folder on the source's own file system when there is one.
* **Publishing**: outputs are staged *next to* the destination (``<parent>/.byo-outputs-<host>-
  <pid>-*``, same file system), so each is made visible by one ``rename`` and nothing but final
  files ever appears in the destination, even if the worker is killed; staging is removed by the
  next run on that machine. A destination is never written through a symlinked directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from functools import cached_property
from typing import TYPE_CHECKING

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.filesystems import LOCAL_PROTOCOLS, filesystem
from airflow_byo.scratch import scratch_dir, sweep
from airflow_byo.storage.backends.base import Backend, PendingOutput, SourceFile, StagedInput
from airflow_byo.storage.local_files import (
    LocalOutput,
    list_local,
    open_output_dir,
    open_source_file,
    stage_source_file,
)

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from airflow_byo.filesystems import StorageErrors
    from airflow_byo.results import StagedOutput
    from airflow_byo.storage.selection import FileFilter

__all__ = ["LocalBackend", "LocalPending"]

log = logging.getLogger(__name__)


class LocalBackend(Backend):
    """A directory of this machine; its URL is its absolute path."""

    protocols = LOCAL_PROTOCOLS
    is_local = True

    def connect(self) -> tuple[AbstractFileSystem, StorageErrors]:
        return filesystem("file", None, self.describe())  # local files need no connection

    @property
    def root_path(self) -> str:
        return self.url

    def url_for(self, relative_path: str) -> str:
        return os.path.join(self.url, relative_path)

    @cached_property
    def _real_root(self) -> str:
        """The directory's real path (created if missing: destinations are made on first use)."""
        if self.role != "source":
            os.makedirs(self.root_path, exist_ok=True)
        return os.path.realpath(self.root_path)

    def list_files(self, file_filter: FileFilter) -> list[SourceFile]:
        """
        Regular files whose real path is inside the directory: a symlink leading outside is
        skipped with a warning unless ``file_filter.follow_symlinks``.
        """
        try:
            entries = list_local(
                self.root_path, recursive=file_filter.recursive, follow_symlinks=file_filter.follow_symlinks
            )
        except FileNotFoundError:
            raise self.missing() from None
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

    def stage(self, source_file: SourceFile, local: str, owner: tuple[int, int] | None) -> StagedInput:
        """A hard link to the file, checked on its descriptor, or a private copy (see local_files)."""
        fd = open_source_file(
            self._real_root, source_file.relative_path, self.root_path, follow_symlinks=self.follow_symlinks
        )
        try:
            stage_source_file(fd, local, owner)
        except OSError as exc:
            raise self.errors.translate(exc, f"read {source_file.relative_path!r} from") from None
        finally:
            os.close(fd)
        return StagedInput(local, temporary=True)

    def make_input_staging(self) -> str:
        """
        On the source's file system when it can (the temporary directory if that is the same
        file system, else next to the source), so inputs are hard links, not copies.
        """
        parent = None
        with contextlib.suppress(OSError):
            device = os.stat(self._real_root).st_dev
            for candidate in (tempfile.gettempdir(), os.path.dirname(self._real_root)):
                if os.stat(candidate).st_dev == device and os.access(candidate, os.W_OK):
                    parent = candidate
                    break
        if parent is not None and parent != tempfile.gettempdir():
            sweep(parent)  # what killed runs left next to this source
        return scratch_dir("inputs", parent)

    def make_output_staging(self) -> str:
        """
        Next to the destination, on its file system, after sweeping what killed workers of this
        host left there. When the parent is another file system (the destination is a mount point)
        or not writable, the temporary directory: then publishing copies through an unnamed file.
        """
        try:
            os.makedirs(self.root_path, exist_ok=True)
        except OSError as exc:
            raise self.errors.translate(exc, "create") from None
        real = os.path.realpath(self.root_path)
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

    def prepare_publish(self, source: str | StagedOutput, name: str) -> LocalPending:
        """Open the output's directory (made if missing) with no link on the way."""
        try:
            fd, leaf = open_output_dir(self._real_root, name, self.describe())
        except OSError as exc:
            raise self.errors.translate(exc, "write") from None
        return LocalPending(self, name, LocalOutput(source, fd, leaf))


class LocalPending(PendingOutput):
    """Renamed (or linked) into its directory's descriptor on commit."""

    def __init__(self, backend: LocalBackend, name: str, output: LocalOutput) -> None:
        super().__init__(backend, name)
        self.output = output

    def _commit(self) -> None:
        self.output.commit()

    def _retract(self) -> None:
        self.output.retract()

    def close(self) -> None:
        self.output.close()
