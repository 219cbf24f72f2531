"""
An image runtime's environment for one flow: the image unpacked, its Python, the flow's packages.

:func:`prepare_image_environment` is what :meth:`airflow_byo.flow.ResolvedFlow.environment` calls for
a runtime with ``image:``; :func:`prepared_image_root` is how the flow's sandbox settings find the
result again (nothing is fetched or built there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_byo.images.cache import CachedImage, ensure_image, image_cache_path, read_cached
from airflow_byo.images.errors import ByoImageError
from airflow_byo.images.python import MIN_VERSION, python_at
from airflow_byo.images.venv import ensure_image_venv, venv_ready

if TYPE_CHECKING:
    from airflow_byo.images.fetch import RegistryCredentials
    from airflow_byo.images.model import ImageRoot
    from airflow_byo.named_runtimes import Runtime

__all__ = ["ImageEnvironment", "prepare_image_environment", "prepared_image_root", "registry_credentials"]


@dataclass(frozen=True)
class ImageEnvironment:
    """What a flow on an image runtime starts: ``python`` in the sandbox ``root``."""

    python: str
    root: ImageRoot
    image: CachedImage
    python_version: str


def registry_credentials(runtime: Runtime) -> RegistryCredentials | None:
    """The login of the runtime's ``registry_conn_id`` (looked up only when an image is fetched)."""
    if not runtime.registry_conn_id:
        return None
    from airflow_byo.connections import get_connection
    from airflow_byo.images.fetch import RegistryCredentials

    connection = get_connection(runtime.registry_conn_id, f"the registry of runtime {runtime.name!r}")
    if not connection.login:
        raise ByoImageError(
            f"runtime {runtime.name!r}: connection {runtime.registry_conn_id!r} has no login. Fix: set "
            "the registry's login and password (or token) on that connection"
        )
    return RegistryCredentials(runtime.registry_conn_id, connection.login, connection.password or "")


def _where(runtime: Runtime) -> str:
    return f"runtime {runtime.name!r} ({runtime.source})"


def require_sandbox(runtime: Runtime) -> None:
    """An image runs only in the bubblewrap sandbox: say so when this worker has none."""
    from airflow_byo.runner.sandbox_mode import sandbox_mode

    mode, why = sandbox_mode()
    if mode != "bubblewrap":
        reason = (why or "").removeprefix("the processor runs WITHOUT a sandbox: ") or "[byo] sandbox = off"
        raise ByoImageError(
            f"{_where(runtime)} runs the image {runtime.image}, which needs the bubblewrap sandbox, and "
            f"it is not in effect here: {reason}. Fix: make bubblewrap work on this worker (and keep "
            "[byo] sandbox = auto or required), or pick a runtime without image"
        )


def _interpreter(runtime: Runtime, image: CachedImage) -> tuple[str, str]:
    """The image's Python the flow runs (the runtime's ``python`` or the one found), and its version."""
    if runtime.python:
        root_fd = os.open(image.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            found = python_at(root_fd, runtime.python)
        finally:
            os.close(root_fd)
        if found is None:
            raise ByoImageError(
                f"{_where(runtime)}: python {runtime.python!r} is not an executable file in the image "
                f"{runtime.image}. Fix: correct python (a path inside the image), or drop it to use "
                "the image's python3"
            )
    else:
        found = image.python
        if found is None:
            path = dict(image.env).get("PATH", "the default PATH")
            raise ByoImageError(
                f"{_where(runtime)}: the image {runtime.image} has no Python: no python3 or python on its "
                f"PATH ({path}). Fix: set python: to the interpreter's path inside the image, or use an "
                "image with Python (CPython >= 3.9)"
            )
    if found.version is not None and found.version < MIN_VERSION:
        raise ByoImageError(
            f"{_where(runtime)}: the image's Python {found.path} is {found.version_text}; flows need "
            "CPython >= 3.9. Fix: use an image with a newer Python, or point python: at one"
        )
    return found.path, found.version_text


def prepare_image_environment(runtime: Runtime, requirements: list[str]) -> ImageEnvironment:
    """
    The image unpacked (fetched and unpacked now, once per machine), its Python checked, and the
    virtualenv of ``requirements`` built with it (none without requirements: the image's Python
    as it is).

    :raises ByoImageError: no sandbox here, or the image cannot be fetched, verified, unpacked or run.
    :raises ByoPackageError: the packages cannot be installed.
    """
    require_sandbox(runtime)
    try:
        image = ensure_image(runtime.image_reference, lambda: registry_credentials(runtime))
    except ByoImageError as exc:
        raise ByoImageError(f"{_where(runtime)}: {exc}") from None
    python, version = _interpreter(runtime, image)
    venv = ensure_image_venv(image, python, requirements) if requirements else None
    return ImageEnvironment(f"{venv}/bin/python" if venv else python, image.image_root(venv), image, version)


def prepared_image_root(runtime: Runtime, requirements: list[str]) -> ImageRoot:
    """
    The sandbox root of a flow whose environment :func:`prepare_image_environment` prepared.

    :raises ByoImageError: when it was not prepared on this machine (or was pruned since).
    """
    image = read_cached(image_cache_path() / runtime.image_reference.cache_key)
    venv = None
    if image is not None and requirements:
        venv = venv_ready(image, _interpreter(runtime, image)[0], requirements)
    if image is None or (requirements and venv is None):
        raise ByoImageError(
            f"{_where(runtime)}: the image {runtime.image} is not prepared on this worker (or was pruned "
            "meanwhile). Fix: run the flow again (its environment is prepared first), or airflow byo "
            "runtimes pull"
        )
    return image.image_root(venv)
