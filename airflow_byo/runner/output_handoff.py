"""
A file's outputs, from the child's hands into the worker's: taken out of reach, then checked.

The child writes each output into its own **drop folder** (the one folder of its sandbox it may
write). Checking a file there and then reading it by path would be a race the child can win: it
watches the folder (inotify) and swaps the file for a symlink to ``airflow.cfg`` between the two
(issue 21). So, after the child says a file is done, the worker first **moves** every reported
output (``rename``, same file system) into the run's **taken folder**, which no sandbox binds, and
only then checks it -- through a descriptor opened with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink,
FIFO or directory put there instead is refused, never followed or blocked on):

* a regular file of exactly the reported size, with one name (the child kept no hard link);
* no other open file description: a write lease (``F_SETLEASE``) is granted only to the file's
  sole opener, so a child that kept a handle -- to write on after the check, or to ``fchmod``
  it, or to link it back into its folder -- is detected; the file is then **copied** to a fresh
  inode the child never had, and that copy is used;
* its mode is set to 0644 (no setuid/setgid/sticky/exec/world-write bits of the child's
  choosing reach a destination) and, for a root worker, its owner to the worker.

Every later read (preview, upload, publish) opens it again with
:meth:`~airflow_byo.results.StagedOutput.open`, which checks it is still that inode and size.
What the child leaves in its drop folder beyond the reported outputs -- whatever its type -- is
removed (:func:`clear_drop`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
from typing import TYPE_CHECKING

from airflow_byo.results import StagedOutput
from airflow_byo.runtime.protocol import output_path

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from airflow_byo.runtime.protocol import DecodedPreview, OutputReport

__all__ = ["HandoffError", "OutputStaging", "clear_drop", "discard_outputs"]

_F_SETLEASE = 1024  # fcntl.F_SETLEASE on Linux (Python exposes it only from 3.12 on some builds)
_PUBLISHED_MODE = 0o644
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class HandoffError(ValueError):
    """A reported output that is not what the child said (the file fails, nothing is read)."""


class OutputStaging:
    """
    The local staging of one run's outputs: a drop folder per child and the taken folder.

    :param root: an existing directory of the worker's (next to a local destination, or scratch).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.taken = os.path.join(root, "taken")
        os.mkdir(self.taken, 0o700)

    def new_drop(self) -> str:
        """A fresh drop folder for one child (the sandbox hands it to the child's uid)."""
        return tempfile.mkdtemp(prefix="drop-", dir=self.root)

    def take(
        self,
        drop_prefix: str,
        reports: Sequence[OutputReport],
        previews: dict[int, DecodedPreview] | None = None,
    ) -> list[StagedOutput]:
        """
        Move the outputs of one file (``<drop_prefix>-<n>``) into the taken folder and check them.

        :raises HandoffError: an output is missing, not a regular file, not the reported size;
            whatever was taken of this file is removed again.
        """
        taken: list[StagedOutput] = []
        moved: list[str] = []
        try:
            for index, report in enumerate(reports):
                source = output_path(drop_prefix, index)
                target = os.path.join(self.taken, os.path.basename(source))
                try:
                    os.rename(source, target)
                except FileNotFoundError:
                    raise HandoffError(f"output {report['name']!r} was reported but not written") from None
                except OSError as exc:  # e.g. a non-empty directory was put where the file was due
                    raise HandoffError(f"output {report['name']!r} cannot be taken: {exc.strerror}") from None
                moved.append(target)
                info = _checked(target, report)
                decoded = (previews or {}).get(index)
                taken.append(
                    StagedOutput(
                        report["name"],
                        target,
                        info.st_size,
                        report["records"],
                        decoded,
                        info.st_dev,
                        info.st_ino,
                    )
                )
        except BaseException:
            for path in moved:
                _remove(path)
            raise
        return taken


def _checked(path: str, report: OutputReport) -> os.stat_result:
    """The checks of the module docstring, on a descriptor; the file's final identity."""
    name = report["name"]
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise HandoffError(f"output {name!r} is not a regular file (a symlink)") from None
        raise HandoffError(f"output {name!r} cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise HandoffError(
                f"output {name!r} is not a regular file (a directory, FIFO or other file type)"
            )
        if info.st_size != report["size"]:
            raise HandoffError(f"output {name!r}: reported {report['size']} bytes, wrote {info.st_size}")
        if os.geteuid() == 0:
            os.fchown(fd, os.geteuid(), os.getegid())  # the child's uid gives up the file...
        os.fchmod(fd, _PUBLISHED_MODE)  # ... and its choice of mode bits
        if info.st_nlink == 1 and _sole_opener(fd):
            return os.fstat(fd)
    finally:
        os.close(fd)
    copied = _fresh_copy(path)
    if copied.st_size != report["size"]:  # it kept writing through the handle it held
        raise HandoffError(f"output {name!r}: reported {report['size']} bytes, wrote {copied.st_size}")
    return copied


def _sole_opener(fd: int) -> bool:
    """Whether no other open file description (no handle, no mapping) of this inode exists."""
    try:
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_WRLCK)
    except OSError:  # EAGAIN: another opener; EINVAL: no leases on this file system
        return False
    fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_UNLCK)
    return True


def _fresh_copy(path: str) -> os.stat_result:
    """Replace the file at ``path`` by a copy on a new inode that only the worker ever held."""
    directory, leaf = os.path.split(path)
    copy = os.path.join(directory, f".copy-{leaf}")
    with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW | os.O_NONBLOCK)) as source:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(copy, flags, _PUBLISHED_MODE), "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
            target.flush()
            info = os.fstat(target.fileno())
    os.replace(copy, path)
    return info


def discard_outputs(outputs: Sequence[StagedOutput]) -> None:
    """Remove taken outputs that will not be published (or that publishing copied)."""
    for output in outputs:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(output.local_path)


def _remove(path: str) -> None:
    """Remove ``path`` whatever it is; a directory's tree without following any link in it."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)  # fd-based on Linux: links inside are not followed
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def clear_drop(drop: str, keep: Collection[str] = ()) -> None:
    """
    Remove everything in a child's drop folder except the entries of files still queued to it
    (names starting with one of ``keep``, e.g. ``"000012-"``): a failed attempt's outputs, files
    it never reported, directories, links, FIFOs -- whatever it made.
    """
    with contextlib.suppress(FileNotFoundError), os.scandir(drop) as entries:
        for entry in entries:
            if not any(entry.name.startswith(prefix) for prefix in keep):
                _remove(entry.path)
