"""
Which files of a source a flow takes: the one definition of the file-selection parameters.

:class:`FileFilter` is used by every listing; :class:`SelectsFiles` gives the flow operator, the
file sensor and the batch planner the same keyword arguments, docstrings and template fields.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.scratch import TEMP_MARKER

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["FileFilter", "parse_datetime"]


def parse_datetime(value: datetime | str | None, field: str) -> datetime | None:
    """Accept a datetime or an ISO string (as templates render them); naive means UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ByoConfigError(
                f"{field} {value!r} is not an ISO date/time such as '2024-05-01T00:00:00+00:00'"
            ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _matches(relative_path: str, patterns: Sequence[str]) -> bool:
    name = relative_path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(relative_path, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass(frozen=True)
class FileFilter:
    """
    Which files of a source a flow takes.

    :param include: globs matched against the path relative to the source and against the bare
        file name (``*.csv`` matches ``a.csv`` and ``2024/a.csv``); a file must match one.
    :param exclude: globs (same matching) that drop a file.
    :param recursive: also look into sub-directories.
    :param modified_after: only files modified strictly after this time (a datetime or an ISO
        string; naive means UTC).
    :param min_size: only files of at least this many bytes.
    :param max_size: only files of at most this many bytes.
    :param follow_symlinks: take symlinks whatever they point to. Off by default: a local source
        lists (and reads) only regular files whose real path is inside the source, and an SFTP
        source skips what the server reports as links. Turn it on for trusted sources only.
    """

    include: tuple[str, ...] = ("*",)  # a plain str is accepted too
    exclude: tuple[str, ...] = ()
    recursive: bool = True
    modified_after: datetime | None = None
    min_size: int | None = None
    max_size: int | None = None
    follow_symlinks: bool = False

    def __post_init__(self) -> None:
        for field in ("include", "exclude"):
            globs = getattr(self, field)
            if isinstance(globs, str):
                globs = (globs,)
            globs = tuple(globs)
            if not all(isinstance(glob, str) and glob for glob in globs):
                raise ByoConfigError(
                    f"{field} must be a glob or a list of globs such as ['*.csv'], got {globs!r}"
                )
            object.__setattr__(self, field, globs)
        object.__setattr__(self, "modified_after", parse_datetime(self.modified_after, "modified_after"))
        for field in ("min_size", "max_size"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ByoConfigError(f"{field} must be a number of bytes >= 0, got {value!r}")
        if not isinstance(self.follow_symlinks, bool):
            raise ByoConfigError(f"follow_symlinks must be true or false, got {self.follow_symlinks!r}")
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            raise ByoConfigError(f"min_size ({self.min_size}) is larger than max_size ({self.max_size})")

    def matches_name(self, relative_path: str) -> bool:
        """Whether the path alone passes (no temporary name, include and exclude globs)."""
        if TEMP_MARKER in relative_path:
            return False
        return _matches(relative_path, self.include) and not _matches(relative_path, self.exclude)

    def matches(self, relative_path: str, size: int, mtime: float | None) -> bool:
        if not self.matches_name(relative_path):
            return False
        if self.min_size is not None and size < self.min_size:
            return False
        if self.max_size is not None and size > self.max_size:
            return False
        if self.modified_after is None:
            return True
        return mtime is not None and mtime > self.modified_after.timestamp()

    def to_kwargs(self) -> dict[str, Any]:
        """Plain, JSON-serialisable keyword arguments (a trigger carries them to the triggerer)."""
        return {
            "include": list(self.include),
            "exclude": list(self.exclude),
            "recursive": self.recursive,
            "modified_after": self.modified_after.isoformat() if self.modified_after else None,
            "min_size": self.min_size,
            "max_size": self.max_size,
            # Only when on: what triggers already serialised stays as it was.
            **({"follow_symlinks": True} if self.follow_symlinks else {}),
        }
