"""
Who a sandboxed child is on the host when the worker runs as root: a uid of its own.

bubblewrap maps the sandbox's user to the uid that starts it. Started by a root worker, that was
host uid 0: the child owned every root file it could see (``/proc/sys/kernel/core_pattern``
included) and was exempt from ``RLIMIT_NPROC`` (issue 21). So a root worker starts each child's
bwrap as a **dedicated unprivileged uid** taken from ``[byo] sandbox_uid_range`` (default
1900000000-1900065535, far above the ranges distributions and container runtimes hand out): one
uid per child, held with an ``flock`` on ``/run/airflow-byo/sandbox-uids/<uid>`` for the child's
life, so two children on one host -- of one task or of two workers -- never share a uid, and a
uid's ``RLIMIT_NPROC`` counts exactly one child's processes (``job_config.max_processes``). A
killed worker's locks go with its process. The gid is the same number; the child has no
supplementary groups.

A worker that is not root cannot switch uids: its children run as its own uid inside their own
user namespace, without capabilities, and ``RLIMIT_NPROC`` is counted in that namespace.
Standard library only at import.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import random
import stat
import tempfile
from dataclasses import dataclass

__all__ = ["DEFAULT_UID_RANGE", "SandboxIdentity", "lease_identity", "new_view_root", "parse_uid_range"]

DEFAULT_UID_RANGE = "1900000000-1900065535"
LOCK_DIR = "/run/airflow-byo/sandbox-uids"
#: Where a root worker's launcher mounts each child's views. Not the worker's TMPDIR: the child's
#: uid must be able to walk to its views, and a worker's home or temp folder is often 0700.
VIEWS_DIR = "/run/airflow-byo/sandbox-views"
_MAX_TRIES = 512


@dataclass
class SandboxIdentity:
    """A uid/gid leased to one child; :meth:`release` when the child is gone."""

    uid: int
    gid: int
    _lock_fd: int = -1

    def release(self) -> None:
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = -1


def _config_error(message: str) -> Exception:
    from airflow_byo.exceptions import ByoConfigError  # imports Airflow: only when raising

    return ByoConfigError(message)


def parse_uid_range(text: str) -> tuple[int, int]:
    """``"first-last"`` as two uids; the range must lie above 1000 and below 2**31."""
    value = (text or DEFAULT_UID_RANGE).strip()
    first, sep, last = value.partition("-")
    try:
        low, high = int(first), int(last)
    except ValueError:
        low = high = -1
    if not sep or not 1000 < low <= high < 2**31 - 1:
        raise _config_error(
            f"[byo] sandbox_uid_range = {text!r} is not valid: give 'first-last', two uids above 1000 and "
            f"below 2147483647 that no account on the workers uses (default {DEFAULT_UID_RANGE})"
        )
    return low, high


def _root_dir(path: str, mode: int, holds: str) -> int:
    """``path`` opened, created if missing: root's own, nobody else can write (never a planted link)."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    info = os.fstat(fd)
    if info.st_uid != 0 or stat.S_IMODE(info.st_mode) & 0o022:
        os.close(fd)
        raise _config_error(
            f"{path} must be a directory of root's that nobody else can write (it holds {holds}); remove it "
            "and let the worker create it again"
        )
    return fd


def _lock_dir() -> int:
    return _root_dir(LOCK_DIR, 0o700, "the locks of sandbox uids")


def new_view_root() -> str:
    """A fresh, empty mount point for one child's views, reachable by any uid (the folder is 0711)."""
    os.close(_root_dir(VIEWS_DIR, 0o711, "the mount points of sandbox views"))
    os.chmod(VIEWS_DIR, 0o711)  # an older worker may have made it 0700 through its umask
    return tempfile.mkdtemp(prefix="view-", dir=VIEWS_DIR)


def _unused(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return True
    return False  # an account has it: never lend it to a child


def lease_identity(uid_range: tuple[int, int]) -> SandboxIdentity:
    """A uid of ``uid_range`` no live child on this host holds (the worker must be root)."""
    low, high = uid_range
    directory = _lock_dir()
    try:
        start = random.randrange(high - low + 1)  # few collisions between workers starting at once
        for step in range(min(_MAX_TRIES, high - low + 1)):
            uid = low + (start + step) % (high - low + 1)
            fd = os.open(
                str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=directory
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                continue
            if not _unused(uid):
                os.close(fd)
                continue
            return SandboxIdentity(uid, uid, fd)
    finally:
        os.close(directory)
    raise _config_error(
        f"no free sandbox uid in [byo] sandbox_uid_range {low}-{high} after {_MAX_TRIES} tries: each running "
        "child holds one; widen the range"
    )
