"""
The versions of each spec the page saved: ``<spec_folder>/.byo-history/<name>/v<N>.json``.

Each version holds the file's content, its SHA-256, who saved it and when, and what the save was
(``create``, ``save``, ``revert``); a spec's content found on disk that the history does not have
yet (a spec committed in git, edited by hand) is kept as a version of its own before the page
overwrites or deletes it, so nothing the page replaces is lost. Versions are never changed or
removed: deleting a spec keeps its history. The hidden folder is not read as specs
(:func:`airflow_byo.specs.loader.find_specs` skips hidden names) and tells git to ignore it (git
keeps its own history of the folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_byo.plugins.editor.files import read_small, subdir, write_atomic

__all__ = ["HISTORY_DIR", "History", "Version", "content_hash"]

HISTORY_DIR = ".byo-history"
#: A version's file: content plus a few fields (specs are capped by [byo] max_spec_bytes).
_MAX_VERSION_BYTES = 64 * 1024 * 1024
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")
#: The author of content the page found on disk, not saved by it.
OUTSIDE = "(not saved on the page)"


def content_hash(content: bytes) -> str:
    """The SHA-256 of a spec file's bytes: what the page sends back to say which content it edits."""
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True)
class Version:
    """One saved content of a spec."""

    version: int
    author: str
    at: str  # ISO 8601, UTC
    action: str
    hash: str
    file: str  # relative to the spec folder
    content: str

    def summary(self) -> dict[str, Any]:
        """Who, when, what, without the content (the page's history list)."""
        return {k: v for k, v in asdict(self).items() if k != "content"}


class History:
    """The versions of spec ``name`` under the spec folder's descriptor ``folder_fd``."""

    def __init__(self, folder_fd: int, name: str) -> None:
        self.folder_fd, self.name = folder_fd, name

    def versions(self) -> list[Version]:
        """Every version, oldest first ([] when there is none)."""
        try:
            with subdir(self.folder_fd, (HISTORY_DIR, self.name)) as fd:
                numbers = sorted(int(m.group(1)) for n in os.listdir(fd) if (m := _VERSION_FILE.match(n)))
                return [self._read(fd, number) for number in numbers]
        except FileNotFoundError:
            return []

    def get(self, version: int) -> Version | None:
        """Version ``version``, or None."""
        try:
            with subdir(self.folder_fd, (HISTORY_DIR, self.name)) as fd:
                return self._read(fd, version)
        except FileNotFoundError:
            return None

    def add(
        self, content: bytes, *, author: str, action: str, file: str, at: datetime | None = None
    ) -> Version:
        """Keep ``content`` as the next version (call under the spec folder's lock)."""
        self._ignored_by_git()
        with subdir(self.folder_fd, (HISTORY_DIR, self.name), create=True) as fd:
            numbers = [int(m.group(1)) for n in os.listdir(fd) if (m := _VERSION_FILE.match(n))]
            version = Version(
                version=max(numbers, default=0) + 1,
                author=author,
                at=(at or datetime.now(UTC)).isoformat(timespec="seconds"),
                action=action,
                hash=content_hash(content),
                file=file,
                content=content.decode("utf-8", errors="replace"),
            )
            data = json.dumps(asdict(version), indent=1).encode()
            write_atomic(fd, f"v{version.version}.json", data, replace=False)
        return version

    def keep(self, content: bytes, file: str, mtime: float) -> Version | None:
        """Keep content found on disk as a version when no version has it yet; returns it if added."""
        digest = content_hash(content)
        if any(v.hash == digest for v in self.versions()):
            return None
        return self.add(
            content, author=OUTSIDE, action="found", file=file, at=datetime.fromtimestamp(mtime, UTC)
        )

    def _read(self, fd: int, number: int) -> Version:
        data = json.loads(read_small(fd, f"v{number}.json", _MAX_VERSION_BYTES))
        return Version(**{key: data[key] for key in Version.__dataclass_fields__})

    def _ignored_by_git(self) -> None:
        with subdir(self.folder_fd, (HISTORY_DIR,), create=True) as fd, contextlib.suppress(FileExistsError):
            write_atomic(
                fd, ".gitignore", b"# the flow editor's history: git keeps its own\n*\n", replace=False
            )
