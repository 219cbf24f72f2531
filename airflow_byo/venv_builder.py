"""
Build one virtualenv in the standard provider's venv cache, the provider's way but faster.

``PythonVirtualenvOperator._ensure_venv_cache_exists`` (apache-airflow-providers-standard) keeps
each environment in ``<cache>/venv-<hash>``, lets one builder at a time in with an ``flock`` on
``<cache>/venv-<hash>.lock``, and marks a finished build with ``install_complete_marker.json``
holding the text the hash was made from; a folder without that marker (a build killed midway) is
deleted and built again. This module keeps that layout and protocol exactly, so each side reuses
what the other built and waits for the other's build, and changes only how the environment is
made: ``uv venv`` with an absolute interpreter path and no seed packages, where the provider runs
``uv venv --seed --python python3.<minor>`` -- seeding pip, setuptools and wheel and looking the
interpreter up by name cost ~0.45 s per build (issue 17, benchmark B2). Without uv it does what
the provider does: ``python -m venv``, then the environment's own pip.

No Airflow import here: callers pass the hash text and choose uv (see
:mod:`airflow_byo.environment`).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import shlex
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = [
    "MARKER",
    "InstallerError",
    "ensure_built",
    "ensure_cached_venv",
    "follow_step",
    "remove_tree",
    "run_step",
]

log = logging.getLogger(__name__)

#: The provider's name for the file that says "this environment is complete".
MARKER = "install_complete_marker.json"

#: Installer output lines kept for the error message (the log has them all).
_TAIL_LINES = 12


class InstallerError(Exception):
    """A build step exited non-zero (or could not start); the message quotes its error lines."""

    def __init__(self, step: str, reason: str, output: list[str]) -> None:
        self.step = step
        self.output = output
        lines = [line.strip() for line in output if line.strip()]
        # From the installer's first error line on (uv: "error:", pip: "ERROR:"), else its tail.
        first = next((i for i, line in enumerate(lines) if line.lower().startswith("error")), 0)
        detail = " | ".join(lines[first:]).rstrip(".")
        super().__init__(f"{step} {reason}" + (f": {detail}" if detail else ""))


def ensure_cached_venv(
    venv_path: Path, hash_data: str, requirements: list[str], *, python: str, uv: str | None
) -> Path:
    """
    Return ``venv_path`` once it holds a complete environment for ``hash_data``, building it if not.

    :param venv_path: ``<cache>/venv-<hash>``, as the provider names it.
    :param hash_data: the text the hash was made from; the marker holds it once the build is done.
    :param requirements: requirement strings, in the order the provider writes ``requirements.txt``.
    :param python: absolute path of the interpreter (a venv's python will do: both builders use its base).
    :param uv: the uv executable, or None to build with ``python -m venv`` and pip.
    :raises InstallerError: if a build step fails; the partial environment is removed.
    """

    def build(path: Path, lock_fd: int) -> None:
        _build(path, requirements, python=python, uv=uv, lock_fd=lock_fd)

    return ensure_built(venv_path, hash_data, build, what="Python virtual environment")


def ensure_built(
    path: Path, marker_text: str, build: Callable[[Path, int], None], *, what: str = "build"
) -> Path:
    """
    The cache discipline of flow environments, for anything built once into a folder: the
    provider's ``flock`` on ``<path>.lock`` lets one builder in at a time; a folder whose marker
    (:data:`MARKER`) holds ``marker_text`` is complete and reused; any other folder (a build killed
    midway) is deleted and built again; the marker is written only after ``build`` returned, and a
    failed build's folder is removed. Image roots use it too (:mod:`airflow_byo.images.cache`).

    :param build: ``build(path, lock_fd)`` fills the new, empty ``path``; steps it runs in other
        processes should inherit ``lock_fd``, so a killed builder's leftovers stay locked until they end.
    :param what: how the log names what is built.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the last holder of this file closes it
        marker = path / MARKER
        if path.exists():
            if _read(marker) == marker_text:
                log.info("Reusing cached %s in %s", what, path)
                return path
            log.warning(
                "Found a previous (probably partially installed) %s in %s, deleting and re-creating.",
                what,
                path,
            )
            remove_tree(path)
        path.mkdir(parents=True)
        try:
            build(path, lock.fileno())
            marker.write_text(marker_text, encoding="utf8")
        except BaseException:
            remove_tree(path)
            raise
    log.info("New %s created in %s", what, path)
    return path


def remove_tree(path: Path) -> None:
    """Remove ``path`` whatever its folders' modes (a build may leave read-only ones); links not followed."""

    def writable(function: Any, name: str, _: Any) -> None:
        parent = os.path.dirname(name)
        with contextlib.suppress(OSError):
            os.chmod(parent, 0o700)
            if os.path.isdir(name) and not os.path.islink(name):
                os.chmod(name, 0o700)
            function(name)

    shutil.rmtree(path, onerror=writable)


def _read(marker: Path) -> str | None:
    try:
        return marker.read_text(encoding="utf8")
    except (OSError, UnicodeDecodeError):
        return None


def _build(venv_path: Path, requirements: list[str], *, python: str, uv: str | None, lock_fd: int) -> None:
    # The same requirements.txt as the provider's _prepare_venv, installed with -r as it does.
    requirements_file = venv_path / "requirements.txt"
    requirements_file.write_text("\n".join(requirements))
    if uv:
        # No --seed: nothing runs pip inside a flow environment (packages are installed from
        # outside, by uv), and the child runtime is started as <env>/bin/python <script>.
        run_step("uv venv", [uv, "venv", "--allow-existing", "--python", python, str(venv_path)], lock_fd)
        step, install = "uv pip install", [uv, "pip", "install", "--python", f"{venv_path}/bin/python"]
    else:
        run_step("python -m venv", [python, "-m", "venv", str(venv_path)], lock_fd)
        step, install = "pip install", [f"{venv_path}/bin/pip", "install"]
    if requirements:
        run_step(step, [*install, "-r", str(requirements_file)], lock_fd)


def run_step(step: str, command: list[str], lock_fd: int, **popen: Any) -> None:
    """
    Run one build step, its output into the log line by line, as the provider's builder does.

    The step inherits the lock: if this process is killed, an installer still running keeps the
    environment locked until it ends, so the next builder cannot delete the folder under it.
    """
    log.info("Executing cmd: %s", shlex.join(command))
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(lock_fd,),
            **popen,
        )
    except OSError as exc:
        raise InstallerError(step, f"could not start ({exc.strerror or exc})", []) from exc
    follow_step(step, process)


def follow_step(step: str, process: subprocess.Popen[bytes]) -> None:
    """
    A started build step's output into the log line by line, until it ends.

    :raises InstallerError: when it exits non-zero, quoting its error lines.
    """
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    with process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            log.info("%s", line)
            tail.append(line)
    if process.returncode != 0:
        raise InstallerError(step, f"exited with code {process.returncode}", list(tail))
