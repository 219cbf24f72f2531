"""
Files of the spec folder, through descriptors: every directory and file is opened with
``O_NOFOLLOW`` relative to its parent's descriptor (never through a link, no check-then-open race),
and every write is atomic (a hidden temporary in the same folder, ``fsync``, then ``rename`` -- or
``link`` where the name must not exist yet -- and an ``fsync`` of the folder).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["TooLarge", "locked", "opened_dir", "read_small", "remove", "subdir", "write_atomic"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TooLarge(OSError):
    """A file over the size limit (never read whole)."""


@contextlib.contextmanager
def opened_dir(path: Path | str) -> Iterator[int]:
    """A descriptor of the directory ``path`` itself (not followed if it is a link)."""
    fd = os.open(path, _DIR)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def subdir(dir_fd: int, parts: tuple[str, ...] | list[str], *, create: bool = False) -> Iterator[int]:
    """A descriptor of ``parts`` below ``dir_fd``, each step opened with ``O_NOFOLLOW``."""
    fd = os.dup(dir_fd)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise OSError(errno.EINVAL, f"not a plain folder name: {part!r}")
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            child = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def read_small(dir_fd: int, name: str, limit: int) -> bytes:
    """The bytes of regular file ``name`` in ``dir_fd``; :class:`TooLarge` over ``limit`` bytes."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    with open(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        if info.st_size > limit:
            raise TooLarge(errno.EFBIG, f"{info.st_size:,} bytes, over {limit:,}", name)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(errno.EFBIG, f"over {limit:,} bytes", name)
    return data


def write_atomic(dir_fd: int, name: str, data: bytes, *, replace: bool = True) -> None:
    """
    Write ``name`` in ``dir_fd`` atomically: readers see the old file or the new one, whole.

    :param replace: False: the name must not exist yet (``FileExistsError`` otherwise, nothing written).
    """
    temp = f".byo-{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(
        temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd
    )
    try:
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dir_fd)
    os.fsync(dir_fd)


def remove(dir_fd: int, name: str) -> None:
    """Remove file ``name`` of ``dir_fd`` (the name itself, never what a link points to)."""
    os.unlink(name, dir_fd=dir_fd)
    os.fsync(dir_fd)


@contextlib.contextmanager
def locked(dir_fd: int, name: str) -> Iterator[None]:
    """An exclusive ``flock`` on file ``name`` of ``dir_fd`` (created if missing): one writer at a time."""
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
