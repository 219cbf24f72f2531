"""
An image's Python, found without running anything of the image on the worker.

``python3`` (then ``python``) in the folders of the image's ``PATH``, resolved in the image's root
(:mod:`.rootfs`); its version from the name the link leads to (``python3.12``) or from the
``lib/python3.N`` folder of its prefix. The child needs CPython >= 3.9 (stdlib only).

Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass

from airflow_byo.images.model import DEFAULT_PATH
from airflow_byo.images.rootfs import open_dir_in_root, realpath_in_root, split_path

__all__ = ["MIN_VERSION", "ImagePython", "find_python", "python_at"]

MIN_VERSION = (3, 9)
_NAMED = re.compile(r"^python(\d)\.(\d+)$")
_CANDIDATES = ("python3", "python")


@dataclass(frozen=True)
class ImagePython:
    """The interpreter a flow on the image runs: its path inside the image, and its version."""

    path: str
    version: tuple[int, int] | None

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version)) if self.version else "unknown"


def python_at(root_fd: int, path: str) -> ImagePython | None:
    """The interpreter at ``path`` inside the image, if an executable file is there."""
    found = realpath_in_root(root_fd, path)
    if found is None:
        return None
    canonical, info = found
    if not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o111:
        return None
    return ImagePython(path, _version(root_fd, canonical))


def find_python(root_fd: int, env: tuple[tuple[str, str], ...]) -> ImagePython | None:
    """``python3`` or ``python`` on the image's ``PATH`` (its ``Env``, else the default), or ``None``."""
    path = dict(env).get("PATH") or DEFAULT_PATH
    for name in _CANDIDATES:
        for folder in path.split(":"):
            if folder.startswith("/"):
                found = python_at(root_fd, f"{folder.rstrip('/')}/{name}")
                if found is not None:
                    return found
    return None


def _version(root_fd: int, canonical: str) -> tuple[int, int] | None:
    named = _NAMED.match(os.path.basename(canonical))
    if named:
        return int(named[1]), int(named[2])
    prefix = os.path.dirname(os.path.dirname(canonical))  # <prefix>/bin/python -> <prefix>
    try:
        lib = open_dir_in_root(root_fd, [*split_path(prefix), "lib"])
    except OSError:
        return None
    try:
        versions = sorted(
            (int(m[1]), int(m[2])) for m in map(_NAMED.match, os.listdir(lib)) if m and _has_stdlib(lib, m[0])
        )
    finally:
        os.close(lib)
    return versions[-1] if versions else None


def _has_stdlib(lib_fd: int, name: str) -> bool:
    with contextlib.suppress(OSError):
        return stat.S_ISREG(os.stat(f"{name}/os.py", dir_fd=lib_fd, follow_symlinks=False).st_mode)
    return False
