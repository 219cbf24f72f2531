"""
The public base of every storage backend, and the types the backends hand back.

A :class:`Backend` is one directory on one kind of storage. It owns the file system (built from
the Airflow connection by :mod:`airflow_byo.filesystems`, with the :class:`StorageErrors` that
translate its exceptions), retries transient failures, maps paths relative to the directory to
the file system's paths and to URLs, and does each step of a run the way its storage allows:
list the files, stage one as a local file for the child (:class:`StagedInput`), prepare an output
and make it visible in one step (:class:`PendingOutput`), sweep what killed workers left.
:class:`~airflow_byo.storage.location.Location` picks the backend by URL scheme and delegates.

When an upload a killed worker left is stale (:func:`stale_age`) is decided here, once for every
backend: an upload whose writer cannot be told dead is removed once idle for longer than the
flow's lease *and* :data:`STALE_FLOOR_SECONDS`. Why not the lease alone (an earlier attempt,
reverted): a lease says when another run may take over a *claim*, not that no upload of the
claiming run is in flight. A live run's upload can sit idle for a while (the first temporary of a
multi-output file waits for the others before the commit; one part of a large S3 upload takes
minutes on a slow link), while a lease can be one second long (the tests use that), so a renewal
delayed on a busy worker would abort a live upload. The floor is far longer than any part or a
commit wait takes; a longer lease raises it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow_byo.exceptions import ByoNotFoundError, ByoStorageError
from airflow_byo.filesystems import StorageErrors, filesystem, with_retries
from airflow_byo.scratch import scratch_dir

if TYPE_CHECKING:
    from collections.abc import Callable

    from fsspec import AbstractFileSystem

    from airflow_byo.results import StagedOutput
    from airflow_byo.storage.selection import FileFilter

__all__ = [
    "STALE_FLOOR_SECONDS",
    "Backend",
    "PendingOutput",
    "SourceFile",
    "StagedInput",
    "etag_of",
    "mtime_of",
    "stale_age",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Idle time after which an upload whose writer cannot be checked belongs to no live run: an
#: hour, far longer than one S3 part or an output's wait for its commit takes.
STALE_FLOOR_SECONDS = 3600.0


def stale_age(lease_seconds: float) -> float:
    """How long an upload of unknown writer must be idle to be swept: the lease, at least the floor."""
    return max(float(lease_seconds), STALE_FLOOR_SECONDS)


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
    A source file as a local path the child can read: a link to the local file or a private copy,
    or a download. :meth:`release` is the one place that decides what to delete.
    """

    path: str
    temporary: bool

    def release(self) -> None:
        if self.temporary:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def mtime_of(info: dict[str, Any]) -> float | None:
    """The modification time in an fsspec ``info``/listing entry, whatever the backend calls it."""
    value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def etag_of(info: dict[str, Any]) -> str | None:
    value = info.get("ETag") or info.get("etag")
    return str(value).strip('"') if value else None


class PendingOutput:
    """
    An output prepared by :meth:`Backend.prepare_publish`: everything that can fail while nothing
    is visible yet is done. :meth:`commit` makes it visible in one atomic step; :meth:`retract`
    removes a committed one again (another output of the same input failed); :meth:`close` drops
    what an uncommitted one left. Backends implement ``_commit`` and ``_retract``.

    Two steps, so that the :class:`~airflow_byo.storage.publisher.Publisher` can prepare all
    outputs of an input file before committing any, and retract the committed ones when a later
    one fails: a file's outputs are published all or nothing.
    """

    def __init__(self, backend: Backend, name: str) -> None:
        self.backend, self.name = backend, name
        #: Where the output is visible once committed.
        self.url = backend.url_for(name)
        self.committed = False

    def commit(self) -> str:
        """Make the output visible under its final name; return its URL."""
        try:
            self._commit()
        except OSError as exc:
            raise self.backend.errors.translate(exc, "write") from None
        self.committed = True
        return self.url

    def retract(self) -> None:
        """Remove the committed output again."""
        if self.committed:
            self._retract()
            self.committed = False

    def close(self) -> None:
        """Drop what an uncommitted output left (a temporary); release handles."""

    def _commit(self) -> None:
        raise NotImplementedError

    def _retract(self) -> None:
        raise NotImplementedError


class Backend:
    """
    One directory on one kind of storage. A backend sets :attr:`protocols` and implements
    :attr:`root_path`, :meth:`list_files`, :meth:`stage` and :meth:`prepare_publish`; the rest
    has defaults that suit any fsspec file system.

    :param url: the directory as users wrote it, normalised (an absolute path for local ones).
    :param protocol: the URL's scheme (``file`` for a path).
    :param conn_id: the Airflow connection holding the credentials, if any.
    :param role: ``"source"``, ``"destination"``...; named in messages (a source is never created).
    :param follow_symlinks: read source files through links that lead outside the directory
        (trusted setups only).
    """

    #: The URL schemes the backend is registered for (see :mod:`airflow_byo.storage.backends`).
    protocols: ClassVar[tuple[str, ...]] = ()
    #: Files on this machine: inputs are linked, not downloaded, and outputs renamed into place.
    is_local: ClassVar[bool] = False

    def __init__(
        self, url: str, protocol: str, conn_id: str | None, *, role: str, follow_symlinks: bool
    ) -> None:
        self.url, self.protocol, self.conn_id = url, protocol, conn_id
        self.role, self.follow_symlinks = role, follow_symlinks
        #: Idle time after which an upload of unknown writer belongs to no live run (see stale_age).
        self.stale_after = STALE_FLOOR_SECONDS
        #: What killed workers left here and was removed (URLs): by :meth:`sweep_stale_uploads`,
        #: and by sweeps while publishing.
        self.leftovers_removed: list[str] = []

    def describe(self) -> str:
        return f"{self.role} {self.url!r}"

    # -- the file system -----------------------------------------------------------------------
    def connect(self) -> tuple[AbstractFileSystem, StorageErrors]:
        """The file system and its error translator, built on first use (SFTP connects here)."""
        return filesystem(self.protocol, self.conn_id, self.describe())

    @cached_property
    def _connected(self) -> tuple[AbstractFileSystem, StorageErrors]:
        return self.connect()

    @property
    def fs(self) -> AbstractFileSystem:
        return self._connected[0]

    @property
    def errors(self) -> StorageErrors:
        return self._connected[1]

    def retry(self, operation: Callable[[], T], action: str) -> T:
        """Run one file-system call, retrying transient failures; errors come out translated."""
        return with_retries(operation, self.errors, action)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def root_path(self) -> str:
        """The directory's path as its file system names it (no scheme, no trailing slash)."""
        raise NotImplementedError

    def path_for(self, relative_path: str) -> str:
        return f"{self.root_path}/{relative_path}"

    def url_for(self, relative_path: str) -> str:
        return f"{self.url}/{relative_path}"

    def missing(self) -> ByoNotFoundError:
        """The error for a directory that does not exist."""
        return ByoNotFoundError(
            f"{self.describe()} does not exist"
            + (f" (connection {self.conn_id!r})" if self.conn_id else "")
            + ": create the directory (bucket/prefix) or fix the path"
        )

    # -- the steps of a run --------------------------------------------------------------------
    def list_files(self, file_filter: FileFilter) -> list[SourceFile]:
        """The regular files that pass ``file_filter``, sorted by relative path."""
        raise NotImplementedError

    def file_info(self, relative_path: str) -> SourceFile:
        """Describe one file (test mode's single sample file)."""
        url = self.url_for(relative_path)
        try:
            info = self.retry(lambda: self.fs.info(self.path_for(relative_path)), "read")
        except ByoNotFoundError:
            raise ByoNotFoundError(f"file {url!r} does not exist") from None
        if info.get("type") != "file":
            raise ByoStorageError(f"{url!r} is not a file; give the path of one file")
        return SourceFile(url, relative_path, int(info.get("size") or 0), mtime_of(info), etag_of(info))

    def stage(self, source_file: SourceFile, local: str, owner: tuple[int, int] | None) -> StagedInput:
        """Put ``source_file``'s bytes at the local path ``local`` (see :meth:`Location.stage`)."""
        raise NotImplementedError

    def make_input_staging(self) -> str:
        """Create the private folder inputs are staged in (removed by the caller)."""
        return scratch_dir("inputs")

    def make_output_staging(self) -> str:
        """Create the local folder the child writes outputs to before they are published."""
        return scratch_dir("outputs")

    def prepare_publish(self, source: str | StagedOutput, name: str) -> PendingOutput:
        """Everything that can fail before ``source`` becomes visible as ``name``."""
        raise NotImplementedError

    def sweep_stale_uploads(self, older_than: float) -> list[str]:
        """
        Start a run's sweeping: uploads idle for ``older_than`` seconds are stale from now on.
        Backends whose killed uploads stay behind remove them (through :meth:`swept`); returns
        what was removed.
        """
        self.stale_after, self.leftovers_removed = older_than, []
        return []

    def swept(self, sweep: Callable[[], list[str]]) -> list[str]:
        """Run one sweep and keep what it removed; a sweep that fails is logged, never raised."""
        try:
            removed = sweep()
        except Exception as exc:  # noqa: BLE001 -- a sweep never fails a run
            log.warning(
                "Could not sweep stale uploads of %s: %s", self.describe(), self.errors.translate(exc)
            )
            return []
        self.leftovers_removed.extend(removed)
        return removed
