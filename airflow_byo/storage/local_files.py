"""
Local files, safely: listing that stays inside the source root, and publishing that never
writes through a symlink and never shows a partial file.

* **Listing** walks the source itself (``os.scandir``): a symlink is taken only when its real
  path is a regular file inside the source root (or always with ``follow_symlinks``); linked
  directories are never entered unless ``follow_symlinks`` is on. Anything else is skipped with
  a warning that names it.
* **Reading** opens the file and checks the descriptor (:func:`open_source_file`), then hands the
  child a hard link or private copy of it (:func:`stage_source_file`).
* **Publishing** opens each directory of an output's name relative to the destination with
  ``O_NOFOLLOW`` (no race between a check and the write), then renames the staged file into place
  (staging lies next to the destination on the same file system: see
  :mod:`airflow_byo.storage.backends.local`, the backend these functions serve). When staging is
  on another file system, the bytes go through an unnamed ``O_TMPFILE`` linked into place (it
  vanishes if the worker dies), else a hidden ``.byo-`` temporary renamed over the name.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_byo.exceptions import ByoNotFoundError, ByoStorageError
from airflow_byo.scratch import TEMP_MARKER

if TYPE_CHECKING:
    from airflow_byo.results import StagedOutput

__all__ = [
    "LocalOutput",
    "list_local",
    "open_output_dir",
    "open_source_file",
    "open_staged_source",
    "stage_source_file",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalEntry:
    relative_path: str
    size: int
    mtime: float


def _inside(real_root: str, path: str) -> bool:
    return path == real_root or path.startswith(real_root.rstrip("/") + "/")


def _skip(path: str, target: str, root: str, why: str) -> None:
    log.warning(
        "Skipped %s -> %s: %s source %s. Replace the link with the file, or set follow_symlinks=True "
        "for a trusted source",
        path,
        target,
        why,
        root,
    )


def list_local(root: str, *, recursive: bool, follow_symlinks: bool) -> list[LocalEntry]:
    """Regular files under ``root`` (relative paths, sizes, mtimes); see the module docstring."""
    real_root = os.path.realpath(root)
    found: list[LocalEntry] = []
    seen_dirs: set[tuple[int, int]] = set()  # a followed link loop must end

    def walk(directory: str, relative: str) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                rel = f"{relative}{entry.name}"
                try:
                    if entry.is_symlink():
                        target = os.path.realpath(entry.path)
                        if not follow_symlinks and not _inside(real_root, target):
                            _skip(entry.path, target, root, "a link to outside the")
                            continue
                        if entry.is_dir() and not follow_symlinks:
                            _skip(entry.path, target, root, "a linked directory (never entered) in the")
                            continue
                    info = entry.stat()  # follows a link that was let through
                except OSError:  # vanished, or a dangling link
                    continue
                if stat.S_ISDIR(info.st_mode):
                    if recursive and (info.st_dev, info.st_ino) not in seen_dirs:
                        seen_dirs.add((info.st_dev, info.st_ino))
                        walk(entry.path, rel + "/")
                elif stat.S_ISREG(info.st_mode):
                    found.append(LocalEntry(rel, info.st_size, info.st_mtime))

    with contextlib.suppress(OSError):
        info = os.stat(root)
        seen_dirs.add((info.st_dev, info.st_ino))
    walk(root, "")
    return found


def open_source_file(real_root: str, relative_path: str, root: str, *, follow_symlinks: bool) -> int:
    """
    A read-only descriptor of ``relative_path`` of the source ``root``, checked on the descriptor
    itself: a regular file (a FIFO or device put there is never read, nor blocked on) whose real
    path, as the kernel names the opened file, is inside ``real_root`` -- unless
    ``follow_symlinks``. No check of a path that a swap could outdate: what is checked is what is
    read (issue 21).
    """
    path = os.path.join(root, relative_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:  # gone since it was listed
        raise ByoNotFoundError(f"source file {path!r} is not a regular file") from None
    except OSError:
        raise ByoStorageError(f"source file {path!r} is not a regular file") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ByoStorageError(f"source file {path!r} is not a regular file")
        real = os.readlink(f"/proc/self/fd/{fd}")
        if not follow_symlinks and not _inside(real_root, real):
            raise ByoStorageError(
                f"source file {path!r} resolves to {real!r}, outside the source {root!r}: links out of a "
                "source are not read; replace the link with the file, or set follow_symlinks=True for a "
                "trusted source"
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def stage_source_file(fd: int, target: str, owner: tuple[int, int] | None) -> None:
    """
    Put the opened source file at ``target`` for the child, which sees no other file of the source
    (issue 21): a hard link when the file system allows it and the child may read the file as it
    is (``owner`` None: the child is the worker's own uid; else the file is world-readable), else
    a private copy owned by ``owner`` (mode 0400).
    """
    if owner is None or os.fstat(fd).st_mode & stat.S_IROTH:
        directory = os.open(os.path.dirname(target), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # linkat(AT_SYMLINK_FOLLOW) of the descriptor: this very inode. (Without a dir_fd,
            # Python calls link(2), which would link the /proc entry itself.)
            os.link(
                f"/proc/self/fd/{fd}", os.path.basename(target), dst_dir_fd=directory, follow_symlinks=True
            )
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP):
                raise
        finally:
            os.close(directory)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    out = os.open(target, flags, 0o400)
    try:
        if owner is not None:
            os.fchown(out, *owner)
        offset, size = 0, os.fstat(fd).st_size
        while offset < size:
            sent = os.sendfile(out, fd, offset, min(size - offset, 1 << 30))
            if sent == 0:
                break
            offset += sent
    except BaseException:
        os.close(out)
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
    os.close(out)


def _components(name: str, where: str) -> list[str]:
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ByoStorageError(f"output name {name!r} for {where} must be a relative path without '..'")
    return parts


def open_output_dir(root: str, name: str, where: str) -> tuple[int, str]:
    """
    ``(directory fd, leaf)`` for output ``name`` under ``root``, creating missing directories.
    Every directory is opened with ``O_NOFOLLOW``: a symlink anywhere on the way is refused.
    """
    *dirs, leaf = _components(name, where)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = root
    try:
        for part in dirs:
            walked = f"{walked}/{part}"
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=fd)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    kind = "a symlink" if os.path.islink(walked) else "not a directory"
                    raise ByoStorageError(
                        f"cannot write output {name!r}: {walked!r} in {where} is {kind}; a destination is "
                        "never written through links: remove it or choose another output name"
                    ) from None
                raise
            os.close(fd)
            fd = child
        name_max = os.fpathconf(fd, "PC_NAME_MAX")
        if len(os.fsencode(leaf)) > name_max:
            raise OSError(errno.ENAMETOOLONG, f"file name longer than {name_max} bytes", f"{walked}/{leaf}")
    except BaseException:
        os.close(fd)
        raise
    return fd, leaf


class LocalOutput:
    """
    One output on its way into a local destination: :meth:`commit`, then maybe :meth:`retract`.

    :param source: the staged file: a taken output (moved by rename, and checked to be the same
        inode once in place; copied through a checked descriptor across file systems) or a path
        of the worker's own (quarantine copies).
    """

    def __init__(self, source: str | StagedOutput, dir_fd: int, leaf: str) -> None:
        self.source, self.dir_fd, self.leaf = source, dir_fd, leaf

    def commit(self) -> None:
        source = self.source
        path = source if isinstance(source, str) else source.local_path
        try:
            os.replace(path, self.leaf, dst_dir_fd=self.dir_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy_into(source, self.dir_fd, self.leaf)
            return
        if not isinstance(source, str):
            placed = os.stat(self.leaf, dir_fd=self.dir_fd, follow_symlinks=False)
            if (placed.st_dev, placed.st_ino) != (source.device, source.inode):
                raise OSError(errno.ESTALE, "the staged output was replaced", path)

    def retract(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.leaf, dir_fd=self.dir_fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.dir_fd)


def open_staged_source(source: str | StagedOutput) -> int:
    """A read-only descriptor of what is to be published (a taken output is checked: see outcomes)."""
    if isinstance(source, str):
        return os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    return source.open()


def _copy_into(source: str | StagedOutput, dir_fd: int, leaf: str) -> None:
    """Copy ``source`` to ``leaf`` in ``dir_fd`` so that only the complete file is ever named."""
    try:
        fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            raise
        fd = -1
    if fd >= 0:
        try:
            with open(open_staged_source(source), "rb") as src, open(fd, "wb", closefd=False) as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
            with contextlib.suppress(FileExistsError):
                os.link(f"/proc/self/fd/{fd}", leaf, dst_dir_fd=dir_fd, follow_symlinks=True)
                return
            temp = _temp_name(leaf)  # linkat cannot replace: link to a hidden name, rename over
            os.link(f"/proc/self/fd/{fd}", temp, dst_dir_fd=dir_fd, follow_symlinks=True)
        finally:
            os.close(fd)
    else:
        temp = _temp_name(leaf)
        with open(open_staged_source(source), "rb") as src, open(_opener_in(dir_fd, temp), "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
    try:
        os.replace(temp, leaf, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise


def _opener_in(dir_fd: int, name: str) -> int:
    return os.open(
        name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd
    )


def _temp_name(leaf: str) -> str:
    return f"{TEMP_MARKER}{uuid.uuid4().hex[:12]}-{leaf}"
