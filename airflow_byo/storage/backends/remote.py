"""
What the remote backends share: a listing through the file system (``find`` or ``ls``: S3 pages
through any number of objects), and inputs downloaded to the local staging folder, streamed to
disk, never held in memory. Their publishing and sweeping are their own (:mod:`.s3`, :mod:`.sftp`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_byo.scratch import TEMP_MARKER
from airflow_byo.storage.backends.base import Backend, SourceFile, StagedInput, etag_of, mtime_of

if TYPE_CHECKING:
    from airflow_byo.storage.selection import FileFilter

__all__ = ["RemoteBackend"]

log = logging.getLogger(__name__)


class RemoteBackend(Backend):
    """A directory on a remote fsspec file system, listed and downloaded through it."""

    #: Whether the file system's paths start at ``/`` (``sftp:///incoming`` is ``/incoming``);
    #: S3's start with the bucket.
    rooted: ClassVar[bool] = True

    @cached_property
    def root_path(self) -> str:
        stripped = self.fs._strip_protocol(self.url + "/")
        path = str(stripped[0] if isinstance(stripped, list) else stripped).rstrip("/")
        return "/" + path if self.rooted and not path.startswith("/") else path

    def download_options(self) -> dict[str, Any]:
        """Keyword arguments of the file system's ``get_file``: none, it streams."""
        return {}

    def list_files(self, file_filter: FileFilter) -> list[SourceFile]:
        """
        Only regular files are listed. What the server reports as a symbolic link is skipped with a
        warning unless ``file_filter.follow_symlinks``; then its target is listed if it is a file.
        """
        root = self.root_path

        def listing() -> dict[str, dict[str, Any]]:
            if file_filter.recursive:
                found = self.fs.find(root, withdirs=False, detail=True)
                return dict(found) if isinstance(found, dict) else {}
            return {e["name"]: e for e in self.fs.ls(root, detail=True) if e.get("type") in ("file", "link")}

        entries = self.retry(listing, "list")
        if not entries and not self.retry(lambda: self.fs.isdir(root), "list"):
            raise self.missing()
        prefix = root.rstrip("/") + "/"
        files = []
        for name, entry in entries.items():
            full = name.lstrip("/") if not root.startswith("/") else name
            if not full.startswith(prefix):
                continue
            relative = full[len(prefix) :]
            info = self._followed(full, relative, file_filter) if entry.get("type") == "link" else entry
            if info is None:
                continue
            size, mtime = int(info.get("size") or 0), mtime_of(info)
            if file_filter.matches(relative, size, mtime):
                files.append(SourceFile(self.url_for(relative), relative, size, mtime, etag_of(info)))
        files.sort(key=lambda f: f.relative_path)
        return files

    def _followed(self, full: str, relative: str, file_filter: FileFilter) -> dict[str, Any] | None:
        """The info of a linked file when links are followed, else None (with a warning)."""
        if TEMP_MARKER in relative or not file_filter.matches_name(relative):
            return None
        if not file_filter.follow_symlinks:
            log.warning(
                "Skipped %s: the server reports a symbolic link in %s; links are not followed "
                "unless follow_symlinks=True (trusted sources only)",
                self.url_for(relative),
                self.describe(),
            )
            return None
        info: dict[str, Any] = self.retry(lambda: self.fs.info(full), "list")  # the link's target
        return info if info.get("type") == "file" else None

    def stage(self, source_file: SourceFile, local: str, owner: tuple[int, int] | None) -> StagedInput:
        """Download ``source_file`` to ``local``, handed to ``owner`` (read only) when given."""
        try:
            options = self.download_options()
            remote = self.path_for(source_file.relative_path)
            action = f"download {source_file.relative_path!r} from"  # the message names the file
            self.retry(lambda: self.fs.get_file(remote, local, **options), action)
            if owner is not None:
                os.chown(local, *owner)
                os.chmod(local, 0o400)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)
            raise
        return StagedInput(local, temporary=True)
