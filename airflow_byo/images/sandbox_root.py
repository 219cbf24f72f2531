"""
bubblewrap options that run a child in an image: the image's root file system at ``/``.

bwrap starts from an empty tmpfs root. Each top-level entry of the unpacked image is bound there
read-only (a symlink recreated as written, e.g. merged-/usr's ``/lib -> usr/lib``), except
``/proc``, ``/dev``, ``/tmp`` and ``/sys``, which the sandbox makes its own. The sandbox binds
more folders afterwards, each at its host path (the flow's virtualenv, the staged runtime, the
inputs, the drop folder, read-only paths): a folder of the image on the way to one of them is made
as a folder of the tmpfs instead, and the image's entries in it are bound one by one, so bwrap can
create the mount point without writing into the image (bubblewrap 0.8, Debian 12, has no overlay
mounts). ``--remount-ro /`` then makes the whole root read-only.

Resource limits: the image has no ``prlimit``, so its own Python sets them before it execs the
child (:func:`limits_prefix`).

Standard library only.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["image_root_args", "limits_prefix"]

#: Top-level folders the sandbox provides itself (its own /proc, minimal /dev, private /tmp; no /sys).
_OWN = frozenset({"proc", "dev", "tmp", "sys"})

#: Set the limits given as JSON, then exec the child (run by the image's Python, ``-I -S``).
_SET_LIMITS = (
    "import json, os, resource, sys\n"
    "for name, value in json.loads(sys.argv[1]).items():\n"
    "    resource.setrlimit(getattr(resource, 'RLIMIT_' + name), (value, value))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def _tree(paths: Iterable[str]) -> dict[str, dict]:
    """The mount points as nested folders: ``{"etc": {"resolv.conf": {}}}``."""
    tree: dict[str, dict] = {}
    for path in paths:
        node = tree
        for part in (p for p in path.split("/") if p):
            node = node.setdefault(part, {})
    return tree


def image_root_args(root: str, source: str, mount_points: Iterable[str]) -> list[str]:
    """
    bwrap options that show the image unpacked at ``root`` as ``/``, leaving room for
    ``mount_points`` (absolute paths bwrap mounts later).

    :param root: the image's root on the worker (listed here, without following links).
    :param source: where bwrap finds that root: its path, or a root worker's view of it.
    """
    return _compose(root, source, "", _tree(mount_points))


def _compose(host_dir: str, source: str, rel: str, needed: dict[str, dict]) -> list[str]:
    args: list[str] = []
    with os.scandir(host_dir) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if not rel and entry.name in _OWN:
                continue
            path = f"{rel}/{entry.name}"
            below = needed.get(entry.name)
            if below is None:  # off every mount point's way: the image's entry as it is
                if entry.is_symlink():
                    args += ["--symlink", os.readlink(entry.path), path]
                elif entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
                    args += ["--ro-bind", source + path, path]
            elif below:  # on the way to a mount point: a folder of the tmpfs, its entries one by one
                args += ["--dir", path]
                if entry.is_dir(follow_symlinks=False):
                    args += _compose(entry.path, source, path, below)
            # else: a mount point itself, covered by what is mounted there
    return args


def limits_prefix(python: str, limits: dict[str, int]) -> list[str]:
    """
    The command that sets ``limits`` (``{"NPROC": n, "FSIZE": n, "AS": n}``) and execs what follows
    it, in the image's own ``python`` (what ``prlimit`` does outside images).
    """
    if not limits:
        return []
    return [python, "-I", "-S", "-c", _SET_LIMITS, json.dumps(limits, sort_keys=True)]
