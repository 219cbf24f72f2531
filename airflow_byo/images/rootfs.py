"""
Paths inside an unpacked image, resolved the way the sandbox will see them: in the root.

An image's symlinks are written for the image's own ``/`` (``/usr/bin/python3 -> python3.12``,
``/lib -> usr/lib``, or a hostile ``etc/x -> /etc/shadow``). On the worker, every lookup in an
image starts from a descriptor of its root and walks one component at a time with ``O_NOFOLLOW``;
a symlink is read and resolved by hand, an absolute one from the image's root, and ``..`` never
climbs above it (``openat2``'s ``RESOLVE_IN_ROOT``, in Python). Nothing here follows a link the
kernel's way, so nothing of the host is ever reached through an image.

Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

__all__ = ["open_dir_in_root", "realpath_in_root", "split_path"]

_MAX_LINKS = 40  # as the kernel's ELOOP limit
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_path(path: str) -> list[str]:
    """A path's components, without empty ones and ``.`` (``..`` kept: the walk clamps it)."""
    return [part for part in path.split("/") if part not in ("", ".")]


class _Walk:
    """A walk from the root: the descriptors and names of the folders entered so far."""

    def __init__(self, root_fd: int) -> None:
        self.fds = [os.dup(root_fd)]
        self.names: list[str] = []
        self.links = 0

    @property
    def fd(self) -> int:
        return self.fds[-1]

    def up(self) -> None:
        if len(self.fds) > 1:  # ``..`` of the root is the root
            os.close(self.fds.pop())
            self.names.pop()

    def to_root(self) -> None:
        while len(self.fds) > 1:
            self.up()

    def enter(self, name: str) -> None:
        self.fds.append(os.open(name, _DIR_FLAGS, dir_fd=self.fd))
        self.names.append(name)

    def link(self, name: str) -> list[str]:
        """The components a symlink ``name`` in the current folder stands for."""
        self.links += 1
        if self.links > _MAX_LINKS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", name)
        target = os.readlink(name, dir_fd=self.fd)
        if target.startswith("/"):
            self.to_root()
        return split_path(target)

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

    def take(self) -> int:
        """The current folder's descriptor, kept open; the others closed."""
        fd = self.fds.pop()
        self.close()
        return fd

    def next(self, pending: list[str]) -> tuple[str, os.stat_result | None] | None:
        """
        Consumes ``pending`` up to its next real entry -- ``..`` and symlinks resolved in the root
        -- and returns its name and ``lstat`` (``None``: nothing is there); ``None`` at the end.
        """
        while pending:
            part = pending.pop(0)
            if part == "..":
                self.up()
                continue
            try:
                info = os.stat(part, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                return part, None
            if stat.S_ISLNK(info.st_mode):
                pending[:0] = self.link(part)
                continue
            return part, info
        return None


def open_dir_in_root(root_fd: int, parts: list[str], *, create: bool = False) -> int:
    """
    A descriptor of the folder ``parts`` names inside the root, every symlink on the way resolved
    in the root. With ``create``, missing folders are made (mode 0755) and a non-folder in the way
    is replaced by one, as unpacking a layer over an older one requires.

    :raises OSError: ``ENOENT``/``ENOTDIR`` (without ``create``), ``ELOOP``.
    """
    walk = _Walk(root_fd)
    try:
        pending = list(parts)
        while (found := walk.next(pending)) is not None:
            part, info = found
            if info is None or not stat.S_ISDIR(info.st_mode):
                if not create:
                    raise (FileNotFoundError if info is None else NotADirectoryError)(part)
                if info is not None:
                    os.unlink(part, dir_fd=walk.fd)
                os.mkdir(part, 0o755, dir_fd=walk.fd)
            walk.enter(part)
        return walk.take()
    except BaseException:
        walk.close()
        raise


def realpath_in_root(root_fd: int, path: str) -> tuple[str, os.stat_result] | None:
    """
    Where ``path`` leads inside the image, every symlink (the last one too) resolved in the root:
    the canonical in-image path and its ``lstat``; ``None`` if nothing is there.
    """
    walk = _Walk(root_fd)
    try:
        pending = split_path(path)
        while (found := walk.next(pending)) is not None:
            part, info = found
            if info is None:
                return None
            if not pending:
                return "/" + "/".join([*walk.names, part]), info
            if not stat.S_ISDIR(info.st_mode):
                return None
            walk.enter(part)
        return "/" + "/".join(walk.names), os.fstat(walk.fd)
    except OSError:
        return None
    finally:
        walk.close()
