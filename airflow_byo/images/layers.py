"""
Image layers unpacked into a root file system, safely: an image is input, not code we trust.

Each layer is a tar stream (gzip, zstd or plain) applied over the layers below it, as the OCI
image spec says: ``.wh.<name>`` removes ``<name>`` of a lower layer, ``.wh..wh..opq`` empties its
folder of what lower layers put there, and a new entry replaces whatever was at its path. Every
write goes through a descriptor of its folder opened from the root with ``O_NOFOLLOW``
(:mod:`.rootfs`), so a symlink in the image -- ``etc -> /etc`` followed by ``etc/cron.d/x`` -- is
resolved inside the image, never on the host. Refused (the image is not used): member names that
are absolute or hold ``..``, hard links to a path outside the image or to nothing. Neutralised:
device nodes and FIFOs are dropped, setuid/setgid/sticky bits cleared (files are 0644 or 0755,
folders 0755, all owned by the worker: the sandbox mounts them read-only), symlinks kept as written
(they resolve inside the image's root, where the sandbox puts them). Every byte written counts
against a :class:`SizeBudget`: the image cache's cap.

Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from airflow_byo.images.rootfs import open_dir_in_root, split_path

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["CacheFull", "LayerRefused", "RootWriter", "SizeBudget", "UnpackReport"]

_CHUNK = 1 << 20
_ENTRY_BYTES = 512  # what an entry costs besides its data (a tar header's size)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPAQUE = ".wh..wh..opq"
_WHITEOUT = ".wh."
_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


class LayerRefused(ValueError):
    """A layer holds what no image may (the message names the member)."""


class CacheFull(OSError):
    """The image would take the cache over its cap (``limit`` bytes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over {limit} bytes")
        self.limit = limit


@dataclass
class SizeBudget:
    """Bytes the cache may still take: ``limit`` (``None``: no cap) minus what it ``used``."""

    limit: int | None
    used: int = 0

    def take(self, size: int) -> None:
        self.used += size
        if self.limit is not None and self.used > self.limit:
            raise CacheFull(self.limit)


@dataclass
class UnpackReport:
    """What unpacking did besides writing files (logged once per image)."""

    files: int = 0
    bytes: int = 0
    devices_dropped: int = 0
    special_bits_cleared: int = 0
    whiteouts: int = 0

    def describe(self) -> str:
        text = f"{self.files} entries, {self.bytes / 1e6:.1f} MB"
        if self.whiteouts:
            text += f", {self.whiteouts} whiteouts applied"
        if self.devices_dropped:
            text += f", {self.devices_dropped} device nodes/FIFOs dropped"
        if self.special_bits_cleared:
            text += f", setuid/setgid/sticky bits cleared on {self.special_bits_cleared} files"
        return text


@contextlib.contextmanager
def _decompressed(stream: IO[bytes]) -> Iterator[IO[bytes]]:
    """The tar stream of a layer: gzip and plain read by :mod:`tarfile`, zstd through ``zstd -dc``."""
    head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
    if head != _ZSTD:
        yield stream
        return
    zstd = shutil.which("zstd")
    if zstd is None:
        raise LayerRefused("the layer is zstd-compressed and zstd is not installed (apt-get install -y zstd)")
    process = subprocess.Popen([zstd, "-dcq"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None
    assert process.stdout is not None
    feeder = _Feeder(stream, process.stdin)
    feeder.start()
    try:
        yield process.stdout
    finally:
        process.stdout.close()
        process.kill()
        process.wait()
        feeder.join()


class _Feeder:
    """Copies a stream into a pipe in a thread (zstd's input)."""

    def __init__(self, source: IO[bytes], sink: IO[bytes]) -> None:
        import threading

        self._thread = threading.Thread(target=self._run, args=(source, sink), daemon=True)

    @staticmethod
    def _run(source: IO[bytes], sink: IO[bytes]) -> None:
        with contextlib.suppress(OSError), sink:
            while chunk := source.read(_CHUNK):
                sink.write(chunk)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=30)


class RootWriter:
    """
    Applies layers, in order, to the empty folder ``root`` (a context manager).

    :param budget: the bytes the image may take.
    """

    def __init__(self, root: str, budget: SizeBudget) -> None:
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.budget = budget
        self.report = UnpackReport()
        self._dirs: dict[tuple[str, ...], int] = {}
        self._stale = False
        self._created: dict[tuple[str, ...], set[str]] = {}

    def __enter__(self) -> RootWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._forget_dirs()
        os.close(self.root_fd)

    def apply(self, stream: IO[bytes], label: str) -> None:
        """Apply one layer's tar stream (``label`` names the layer in errors)."""
        self._created = {}
        with _decompressed(stream) as tar_stream, tarfile.open(fileobj=tar_stream, mode="r|*") as tar:
            for member in tar:
                try:
                    self._member(tar, member)
                except LayerRefused as exc:
                    raise LayerRefused(f"layer {label}: member {member.name!r}: {exc}") from None
        self._forget_dirs()

    def ensure_dir(self, path: str) -> None:
        """Make the folder ``path`` (e.g. the image's WorkingDir) exist inside the root."""
        os.close(open_dir_in_root(self.root_fd, split_path(path), create=True))

    # -- one member -------------------------------------------------------------------------------
    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _checked_parts(member.name)
        if not parts:
            return  # the layer's root folder itself
        parent, name = tuple(parts[:-1]), parts[-1]
        self.report.files += 1
        self.budget.take(_ENTRY_BYTES)
        if name == _OPAQUE or name.startswith(_WHITEOUT):
            self._whiteout(parent, name)
            return
        if self._stale:  # something was removed: a cached path may lead elsewhere now
            self._forget_dirs()
        parent_fd = self._dir(parent)
        if member.isdir():
            self._make_dir(parent_fd, name)
        elif member.isreg():
            self._replace(parent_fd, name)
            self._write_file(tar, member, parent_fd, name)
        elif member.issym():
            self._replace(parent_fd, name)
            os.symlink(member.linkname, name, dir_fd=parent_fd)
        elif member.islnk():
            self._replace(parent_fd, name)
            self._hard_link(member.linkname, parent_fd, name)
        else:  # character and block devices, FIFOs: a sandbox has its own minimal /dev
            self.report.devices_dropped += 1
            return
        self._created.setdefault(parent, set()).add(name)

    def _dir(self, parts: tuple[str, ...]) -> int:
        fd = self._dirs.get(parts)
        if fd is None:
            if len(self._dirs) >= 256:
                self._forget_dirs()
            fd = self._dirs[parts] = open_dir_in_root(self.root_fd, list(parts), create=True)
        return fd

    def _forget_dirs(self) -> None:
        """Closes the cached folder descriptors (after anything was removed: a path may lead elsewhere)."""
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs = {}
        self._stale = False

    def _whiteout(self, parent: tuple[str, ...], name: str) -> None:
        self.report.whiteouts += 1
        try:
            parent_fd = open_dir_in_root(self.root_fd, list(parent))
        except OSError:
            return  # nothing below to hide
        try:
            mine = self._created.get(parent, set())
            doomed = os.listdir(parent_fd) if name == _OPAQUE else [name[len(_WHITEOUT) :]]
            for entry in doomed:
                if entry not in mine and entry not in ("", ".", "..") and "/" not in entry:
                    self._remove(parent_fd, entry)
        finally:
            os.close(parent_fd)

    def _remove(self, parent_fd: int, name: str) -> None:
        try:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(name, dir_fd=parent_fd)  # descriptor-based: never follows a link
        else:
            os.unlink(name, dir_fd=parent_fd)
        self._stale = True

    def _replace(self, parent_fd: int, name: str) -> None:
        """What a new entry replaces goes first (a folder too, with what it holds)."""
        with contextlib.suppress(FileNotFoundError):
            os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            self._remove(parent_fd, name)

    def _make_dir(self, parent_fd: int, name: str) -> None:
        try:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode):
            return
        if info is not None:
            self._remove(parent_fd, name)
        os.mkdir(name, 0o755, dir_fd=parent_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            os.fchmod(fd, 0o755)  # whatever the umask
        finally:
            os.close(fd)

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parent_fd: int, name: str) -> None:
        self.budget.take(member.size)
        if member.mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
            self.report.special_bits_cleared += 1
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent_fd)
        with os.fdopen(fd, "wb") as out:
            source = tar.extractfile(member)
            if source is not None:
                while chunk := source.read(_CHUNK):
                    out.write(chunk)
            out.flush()
            os.fchmod(fd, 0o755 if member.mode & 0o111 else 0o644)
            # Python's .pyc files are valid only for their source's mtime: keep it, or every
            # import in the read-only root would compile again.
            os.utime(fd, (member.mtime, member.mtime))
        self.report.bytes += member.size

    def _hard_link(self, target: str, parent_fd: int, name: str) -> None:
        parts = _checked_parts(target, "hard link target")
        if not parts:
            raise LayerRefused("a hard link to the image's root folder")
        try:
            target_dir = open_dir_in_root(self.root_fd, parts[:-1])
        except OSError:
            raise LayerRefused(f"a hard link to {target!r}, which the image does not have") from None
        try:
            info = os.stat(parts[-1], dir_fd=target_dir, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                raise LayerRefused(f"a hard link to the folder {target!r}")
            os.link(parts[-1], name, src_dir_fd=target_dir, dst_dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerRefused(f"a hard link to {target!r}, which the image does not have") from None
        finally:
            os.close(target_dir)


def _checked_parts(name: str, what: str = "path") -> list[str]:
    """A member's path components; absolute paths and ``..`` are refused."""
    if name.startswith("/"):
        raise LayerRefused(f"an absolute {what}: a layer's paths are relative to the image's root")
    parts = split_path(name)
    if ".." in parts:
        raise LayerRefused(f"a {what} with '..': it would leave the image's root")
    if any("\x00" in part for part in parts):
        raise LayerRefused(f"a {what} with a NUL byte")
    return parts
