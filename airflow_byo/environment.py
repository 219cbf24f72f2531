"""
The Python interpreter a flow's processor runs in.

By default a virtualenv holding exactly the flow's packages (no Airflow, no worker site-packages),
cached as the standard provider's ``PythonVirtualenvOperator`` caches its own: the provider's hash
of the requirements, the same ``venv-<hash>`` folders under the cache path, the same lock and
"install complete" marker so that concurrent builds of one environment on a machine are safe, and
uv when the provider would use it. Two flows with the same packages therefore share one
environment -- with each other and with any ``PythonVirtualenvOperator`` that has the same
settings. Only the build itself is our own (:mod:`airflow_byo.venv_builder`): the provider's
costs ~0.45 s more per environment (issue 17).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from airflow_byo.exceptions import ByoPackageError
from airflow_byo.provider_config import byo_home, setting
from airflow_byo.venv_builder import InstallerError, ensure_cached_venv

__all__ = ["CACHE_KEY_VARIABLE", "default_venv_cache_path", "ensure_environment", "environment_key"]

log = logging.getLogger(__name__)

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def default_venv_cache_path() -> Path:
    """``[byo] venv_cache_path`` from Airflow's configuration, else ``$AIRFLOW_HOME/byo/venvs``."""
    configured = setting("venv_cache_path")
    return Path(configured).expanduser() if configured else byo_home("venvs")


#: The Airflow Variable the standard provider adds to every environment's hash: changing it makes
#: every flow build fresh environments (the provider documents it as the way to force rebuilds).
CACHE_KEY_VARIABLE = "python_virtualenv_operator_cache_key"


def environment_key(requirements: list[str]) -> tuple[str, str, list[str]]:
    """
    The standard provider's cache hash for ``requirements``, the text it is made from, and the
    requirements as the provider writes them to ``requirements.txt``.

    They are what a ``PythonVirtualenvOperator(requirements=..., python_version="3.<minor>",
    system_site_packages=False)`` with its default serializer (which adds no package) computes in
    ``_calculate_cache_hash``, so its operators and ours find each other's environments. The recipe
    is ours (the provider's helpers are private and may change in any release);
    tests/test_environment.py checks it against the installed provider, so a change there is seen.
    """
    # The class the provider reads it with: the Task SDK in a task, the metadata DB elsewhere
    # (the api-server's Test, the byo script's cold build).
    from airflow.models.variable import Variable

    listed = sorted(str(requirement) for requirement in requirements)
    hash_data = json.dumps(
        {
            "requirements_list": listed,
            "pip_install_options": None,
            "index_urls": None,
            "cache_key": str(Variable.get(CACHE_KEY_VARIABLE, "")),
            "python_version": PYTHON_VERSION,
            "system_site_packages": False,
        },
        sort_keys=True,
    )
    # MD5 names a cache folder here, as the provider's does: no security meaning.
    return hashlib.md5(hash_data.encode(), usedforsecurity=False).hexdigest()[:8], hash_data, listed


def _interpreter() -> str:
    """
    This interpreter by absolute path: it is the Python of ``PYTHON_VERSION`` (part of the hash),
    and uv finds an interpreter given by path in ~0.01 s, by name (``python3.11``) in ~0.15 s.
    """
    if sys.executable and os.access(sys.executable, os.X_OK):
        return sys.executable
    found = shutil.which(f"python{PYTHON_VERSION}")
    if found is None:
        raise ByoPackageError(
            f"cannot build a flow environment: this worker's interpreter has no usable path and "
            f"python{PYTHON_VERSION} is not on PATH. Install Python {PYTHON_VERSION} on PATH, or set "
            "the runtime's python_interpreter to use an existing one"
        )
    return found


def _uv() -> str | None:
    """uv as the provider would use it: ``[standard] venv_install_method`` (default: when on PATH)."""
    from airflow.providers.common.compat.sdk import conf

    method = str(conf.get("standard", "venv_install_method", fallback="auto")).lower()
    found = shutil.which("uv")
    if method == "uv" and found is None:
        raise ByoPackageError(
            "[standard] venv_install_method = uv, but uv is not on PATH: install uv "
            "(pip install uv) on the worker, or set venv_install_method = auto to build with pip"
        )
    return found if method in ("auto", "uv") else None


def ensure_environment(requirements: list[str], venv_cache_path: Path | None = None) -> Path:
    """
    Return the Python executable of the cached environment for ``requirements``, building it once.

    :param requirements: validated requirement strings (see :func:`airflow_byo.packages.parse_packages`).
    :param venv_cache_path: parent folder of the cached environments.
    :raises ByoPackageError: if the installer fails (unknown package, no matching version, ...).
    """
    # Absolute: the child is started by this path from a directory of its own, so a relative
    # [byo] venv_cache_path would name no interpreter there (exit code 127).
    cache_path = (Path(venv_cache_path) if venv_cache_path else default_venv_cache_path()).absolute()
    cache_hash, hash_data, listed = environment_key(requirements)
    venv_path = cache_path / f"venv-{cache_hash}"
    log.info("Python virtual environment will be cached in %s", venv_path)
    try:
        ensure_cached_venv(venv_path, hash_data, listed, python=_interpreter(), uv=_uv())
    except (InstallerError, OSError) as exc:
        raise ByoPackageError(
            f"could not build the environment for packages {requirements}: {exc}. "
            "Check that each package name and pinned version exists on the package index "
            "and that this worker can reach the index"
        ) from exc
    return venv_path / "bin" / "python"
