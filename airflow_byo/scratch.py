"""
Local scratch directories (staged inputs, outputs before publishing, the child's runtime).

Each is removed when its run ends, whatever happens. A worker killed with SIGKILL cannot clean up,
so scratch names carry the host and the process id (``.byo-inputs-<host>-<pid>-xxxx``), and every
run first removes the scratch of dead processes on its own host: nothing piles up on a worker.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["TEMP_MARKER", "scratch", "scratch_dir", "sweep"]

#: Every temporary name airflow-byo creates contains this marker; listings skip such paths.
TEMP_MARKER = ".byo-"
_NAME = re.compile(r"^\.byo-[a-z]+-(?P<host>[A-Za-z0-9_.-]+)-(?P<pid>\d+)-[^-]+$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def scratch_dir(kind: str, parent: str | None = None) -> str:
    """Create a scratch directory for ``kind`` (letters only) in ``parent`` or the temp dir."""
    return tempfile.mkdtemp(prefix=f"{TEMP_MARKER}{kind}-{_host()}-{os.getpid()}-", dir=parent)


@contextlib.contextmanager
def scratch(kind: str, parent: str | None = None) -> Iterator[str]:
    path = scratch_dir(kind, parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep(parent: str | None = None) -> list[str]:
    """Remove scratch directories left in ``parent`` (or the temp dir) by dead processes of this host."""
    parent = parent or tempfile.gettempdir()
    removed = []
    host = _host()
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            match = _NAME.match(entry.name)
            if match and match["host"] == host and not _alive(int(match["pid"])) and entry.is_dir():
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.path)
    return removed
