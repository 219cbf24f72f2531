"""
The spec folder as the page edits it: find a flow's spec file, read it with its hash, and create,
replace or delete it -- one writer at a time (an ``flock`` in the history folder), never over a
file the page did not load (the SHA-256 the page read must still be the file's), through
descriptors (:mod:`~airflow_byo.plugins.editor.files`), keeping every replaced content in the
spec's history (:mod:`~airflow_byo.plugins.editor.history`).

A spec the page did not create (committed in git, written by hand) is edited in place, wherever it
lies below the folder; a new one is ``<name>.yaml`` at the top. Its name is the spec's ``name``,
which the model restricts to ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}`` (never hidden, never a path);
a name whose file would collide case-insensitively with another spec file is refused too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from airflow_byo.plugins.editor.files import (
    TooLarge,
    locked,
    opened_dir,
    read_small,
    remove,
    subdir,
    write_atomic,
)
from airflow_byo.plugins.editor.history import HISTORY_DIR, History, Version, content_hash
from airflow_byo.specs.loader import SPEC_SUFFIXES, find_specs, read_spec

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["NAME", "Saved", "SpecConflict", "SpecStore", "StoredSpec"]

_LOCK = ".lock"
#: The model's rule for a spec's name (airflow_byo.specs.model): never hidden, never a path.
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


class SpecConflict(Exception):
    """The file is not what the page loaded (or already exists): 409, with the file's current hash."""

    def __init__(self, detail: str, current_hash: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.current_hash = detail, current_hash


@dataclass(frozen=True)
class StoredSpec:
    """A spec file as it is on disk."""

    file: str  # relative to the spec folder
    content: bytes
    mtime: float

    @property
    def hash(self) -> str:
        return content_hash(self.content)


@dataclass(frozen=True)
class Saved:
    """What a write did."""

    file: str
    hash: str | None  # None: deleted
    previous_hash: str | None
    version: int | None  # the history version of the new content
    changed: bool = True


class SpecStore:
    """The specs of ``folder`` (a real path), files at most ``max_bytes`` long."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = folder, max_bytes

    # -- reading ---------------------------------------------------------------------------------
    def locate(self, name: str) -> str | None:
        """The file (relative) of spec ``name``: ``<name>.yaml`` & co, else the first declaring it."""
        if not NAME.match(name):
            return None
        with opened_dir(self.folder) as fd:
            for suffix in SPEC_SUFFIXES:
                with contextlib.suppress(OSError):
                    if stat.S_ISREG(os.stat(f"{name}{suffix}", dir_fd=fd, follow_symlinks=False).st_mode):
                        return f"{name}{suffix}"
        for path in find_specs(self.folder):
            try:
                if read_spec(path, max_bytes=self.max_bytes).data.get("name") == name:
                    return path.relative_to(self.folder).as_posix()
            except Exception:  # noqa: BLE001 - an unreadable file names no flow
                continue
        return None

    def read(self, file: str) -> StoredSpec:
        """
        The file's content; ``FileNotFoundError`` if it is gone, :class:`SpecConflict` if it is (or
        lies below) a link, is not a regular file or is too large: the page leaves those to git.
        """
        try:
            with self._parent(file) as (fd, leaf):
                content = read_small(fd, leaf, self.max_bytes)
                mtime = os.stat(leaf, dir_fd=fd, follow_symlinks=False).st_mtime
        except FileNotFoundError:
            raise
        except TooLarge as exc:
            raise SpecConflict(f"the spec file {file} is too large for the page ({exc.strerror})") from None
        except OSError as exc:
            why = (
                "is a symbolic link (or lies below one)"
                if exc.errno == errno.ELOOP
                else f"cannot be read ({exc.strerror})"
            )
            raise SpecConflict(
                f"the spec file {file} {why}: the page never reads or writes through links or special "
                "files; change it in the DAGs' repository"
            ) from None
        return StoredSpec(file, content, mtime)

    def versions(self, name: str) -> list[Version]:
        """The saved versions of ``name``, oldest first."""
        with opened_dir(self.folder) as fd:
            return History(fd, name).versions()

    def version(self, name: str, number: int) -> Version | None:
        """Version ``number`` of ``name``, or None."""
        with opened_dir(self.folder) as fd:
            return History(fd, name).get(number)

    def collision(self, name: str) -> str | None:
        """Why a new spec ``name`` cannot be created here (another file or spec), or None."""
        wanted = {f"{name}{suffix}".lower() for suffix in SPEC_SUFFIXES}
        with opened_dir(self.folder) as fd:
            taken = sorted(entry for entry in os.listdir(fd) if entry.lower() in wanted)
        if taken:
            return f"the spec file {taken[0]} already exists in the spec folder"
        if found := self.locate(name):
            return f"the spec file {found} already declares a flow named {name!r}"
        return None

    # -- writing ---------------------------------------------------------------------------------
    def create(self, name: str, content: bytes, *, author: str) -> Saved:
        """Write ``<name>.yaml``, which must not exist (:class:`SpecConflict` otherwise)."""
        file = f"{name}.yaml"
        with self._writing(name) as (history, folder_fd):
            if why := self.collision(name):
                raise SpecConflict(f"{name}: {why}: choose another name, or edit that flow")
            try:
                write_atomic(folder_fd, file, content, replace=False)
            except FileExistsError:
                raise SpecConflict(f"{name}: the spec file {file} was just created by someone else") from None
            version = history.add(content, author=author, action="create", file=file)
        return Saved(file, version.hash, None, version.version)

    def replace(
        self, name: str, file: str, content: bytes, *, expected: str, author: str, action: str
    ) -> Saved:
        """Replace ``file`` with ``content`` if it still has hash ``expected``."""
        with self._writing(name) as (history, _):
            current = self._current(name, file, expected, history)
            digest = content_hash(content)
            if digest == current.hash:
                return Saved(file, digest, current.hash, None, changed=False)
            with self._parent(file) as (fd, leaf):
                write_atomic(fd, leaf, content)
            version = history.add(content, author=author, action=action, file=file)
        return Saved(file, digest, current.hash, version.version)

    def delete(self, name: str, file: str, *, expected: str) -> Saved:
        """Remove ``file`` if it still has hash ``expected``; its history stays."""
        with self._writing(name) as (history, _):
            current = self._current(name, file, expected, history)
            with self._parent(file) as (fd, leaf):
                remove(fd, leaf)
        return Saved(file, None, current.hash, None)

    def _current(self, name: str, file: str, expected: str, history: History) -> StoredSpec:
        """The file as it is, checked against ``expected``; its content kept in the history."""
        try:
            current = self.read(file)
        except FileNotFoundError:
            raise SpecConflict(f"{name}: the spec file {file} was deleted since you loaded it") from None
        if current.hash != expected:
            raise SpecConflict(
                f"{name}: the spec file {file} changed since you loaded it (someone saved it, or it changed "
                "in git): reload it, then make your change again",
                current.hash,
            )
        history.keep(current.content, file, current.mtime)
        return current

    @contextlib.contextmanager
    def _writing(self, name: str) -> Iterator[tuple[History, int]]:
        """The spec folder locked for one writer: (the spec's history, the folder's descriptor)."""
        with (
            opened_dir(self.folder) as fd,
            subdir(fd, (HISTORY_DIR,), create=True) as history_fd,
            locked(history_fd, _LOCK),
        ):
            yield History(fd, name), fd

    @contextlib.contextmanager
    def _parent(self, file: str) -> Iterator[tuple[int, str]]:
        """(descriptor of the file's folder, the file's name), every folder opened with O_NOFOLLOW."""
        *folders, leaf = PurePosixPath(file).parts
        with opened_dir(self.folder) as fd, subdir(fd, folders) as parent:
            yield parent, leaf
