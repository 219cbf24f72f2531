"""
A flow's packages on an image: a virtualenv built with the image's own Python, inside the sandbox.

``uv venv --system-site-packages`` (so what the image installed stays importable, and the flow's
packages override it) and ``uv pip install``, run by the worker's uv -- bound read-only into a
sandbox whose root is the image -- because the image's Python may not run on the worker's
libraries, and nothing of an image is ever run on the host. The folder is
``<image>/venvs/venv-<hash>``, the hash made of the image's digest, the interpreter and the sorted
requirements, under the flow environments' lock-and-marker discipline
(:func:`~airflow_byo.venv_builder.ensure_built`). The build may use the network as uv on the worker
does (the deployment's package index, ``UV_*`` settings, proxies and CA bundle).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from typing import TYPE_CHECKING

from airflow_byo.exceptions import ByoPackageError
from airflow_byo.venv_builder import MARKER, InstallerError, ensure_built, follow_step

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_byo.images.cache import CachedImage
    from airflow_byo.runner.sandbox_identity import SandboxIdentity

__all__ = ["ensure_image_venv", "image_venv"]

_TOOLS = "/.byo-build"  # where a build's sandbox shows the worker's uv and its libraries
#: Settings of the worker's uv the build takes along (its cache and Python downloads are its own).
_PASSED = ("SSL_CERT_FILE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")
_NOT_PASSED = ("UV_CACHE_DIR", "UV_PYTHON_INSTALL_DIR", "UV_TOOL_DIR", "UV_PYTHON_DOWNLOADS")


def image_venv(image: CachedImage, python: str, requirements: list[str]) -> tuple[Path, str]:
    """The virtualenv's folder for ``requirements`` on ``image`` with ``python``, and its marker text."""
    hash_data = json.dumps(
        {"image": image.digest, "python": python, "requirements": sorted(requirements)}, sort_keys=True
    )
    key = hashlib.sha256(hash_data.encode()).hexdigest()[:16]
    return image.path / "venvs" / f"venv-{key}", hash_data


def venv_ready(image: CachedImage, python: str, requirements: list[str]) -> str | None:
    """The virtualenv's folder if it is complete, else ``None`` (nothing is built)."""
    path, hash_data = image_venv(image, python, requirements)
    try:
        return str(path) if (path / MARKER).read_text(encoding="utf8") == hash_data else None
    except OSError:
        return None


def ensure_image_venv(image: CachedImage, python: str, requirements: list[str]) -> str:
    """
    The folder of the virtualenv for ``requirements`` on ``image``, built once per machine.

    :raises ByoPackageError: the build failed (its installer's error lines quoted).
    """
    path, hash_data = image_venv(image, python, requirements)
    uv = shutil.which("uv")
    if uv is None:
        raise ByoPackageError(
            f"packages {requirements} on image {image.reference} are installed with uv, which is not on "
            "this worker's PATH. Fix: install uv on the worker (pip install uv)"
        )

    def build(folder: Path, lock_fd: int) -> None:
        _build(image, python, requirements, folder, os.path.realpath(uv))

    try:
        ensure_built(path, hash_data, build, what=f"virtual environment on image {image.digest[:19]}")
    except InstallerError as exc:
        raise ByoPackageError(
            f"could not install packages {requirements} on image {image.reference}: {exc}. Check that "
            "each package and pinned version exists for the image's Python and platform, and that "
            "this worker can reach the package index"
        ) from None
    return str(path)


def _uv_in_sandbox(uv: str) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """
    Where the sandbox shows the worker's uv, and how it is started there: with the worker's own
    dynamic loader and libraries (an image need not have uv's libgcc, nor a glibc at all).
    """
    mounts = [(uv, f"{_TOOLS}/uv")]
    try:  # the worker's own binary: ldd may look at it
        out = subprocess.run(["ldd", uv], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    libraries = re.findall(r"^\s+(\S+) => (/\S+)", out, re.MULTILINE)
    loader = re.search(r"^\s+(/\S*ld-\S+\.so\S*)", out, re.MULTILINE)
    if not libraries or loader is None:  # static: it runs as it is
        return tuple(mounts), [f"{_TOOLS}/uv"]
    mounts += [(os.path.realpath(path), f"{_TOOLS}/lib/{name}") for name, path in libraries]
    mounts.append((os.path.realpath(loader[1]), f"{_TOOLS}/ld.so"))
    return tuple(mounts), [f"{_TOOLS}/ld.so", "--library-path", f"{_TOOLS}/lib", f"{_TOOLS}/uv"]


def _build(image: CachedImage, python: str, requirements: list[str], venv: Path, uv: str) -> None:
    from airflow_byo.runner.sandbox import worker_identity

    (venv / "requirements.txt").write_text("\n".join(requirements))
    mounts, run_uv = _uv_in_sandbox(uv)
    identity = worker_identity()
    try:
        create = [
            *run_uv,
            "venv",
            "--allow-existing",
            "--system-site-packages",
            "--python",
            python,
            str(venv),
        ]
        _in_sandbox(image, venv, mounts, identity, "uv venv", create)
        install = [
            *run_uv,
            "pip",
            "install",
            "--python",
            f"{venv}/bin/python",
            "-r",
            f"{venv}/requirements.txt",
        ]
        _in_sandbox(image, venv, mounts, identity, "uv pip install", install)
    finally:
        if identity is not None:
            identity.release()
        shutil.rmtree(venv / ".uv-cache", ignore_errors=True)
        if identity is not None:  # the child's lent uid built it: the worker owns what it keeps
            for folder, dirs, files in os.walk(venv):
                for name in (folder, *(os.path.join(folder, n) for n in (*dirs, *files))):
                    os.lchown(name, os.geteuid(), os.getegid())


def _build_env(venv: Path) -> tuple[tuple[str, str], ...]:
    env = {"UV_CACHE_DIR": f"{venv}/.uv-cache", "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    for key, value in os.environ.items():
        if (key.startswith("UV_") and key not in _NOT_PASSED) or key.upper() in _PASSED:
            env.setdefault(key, value)
    return tuple(env.items())


def _in_sandbox(
    image: CachedImage,
    venv: Path,
    mounts: tuple[tuple[str, str], ...],
    identity: SandboxIdentity | None,
    step: str,
    argv: list[str],
) -> None:
    """One build step in a sandbox on the image: the venv writable, uv and the CA bundle read-only."""
    from airflow_byo.runner.sandbox import SandboxSpec, prepare_sandbox

    root = image.image_root()
    root = replace(root, workdir="/tmp", env=(*root.env, *_build_env(venv)))
    read_only: tuple[str, ...] = ()
    if (bundle := os.environ.get("SSL_CERT_FILE")) and os.path.isfile(bundle):  # the worker's CA bundle
        read_only = (os.path.abspath(bundle),)
    spec = SandboxSpec(
        interpreter=argv[0],
        read_only=read_only,
        writable=(str(venv),),
        network="host",
        mounts=mounts,
        image=root,
    )
    with prepare_sandbox(argv, spec, identity=identity) as launch:
        follow_step(
            step, launch.start(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        )
