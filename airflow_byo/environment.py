"""
The Python interpreter a flow's processor runs in.

By default a virtualenv holding exactly the flow's packages (no Airflow, no worker site-packages),
built and cached by the standard provider's ``PythonVirtualenvOperator`` machinery: the same hash
of the requirements, the same ``venv-<hash>`` folders under the cache path, the same file lock so
that concurrent builds of one environment on a machine are safe, and uv when it is on ``PATH``.
Two flows with the same packages therefore share one environment -- with each other and with any
``PythonVirtualenvOperator`` that has the same settings.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from airflow_byo.exceptions import ByoPackageError
from airflow_byo.provider_config import byo_home, setting

__all__ = ["default_venv_cache_path", "ensure_environment"]

log = logging.getLogger(__name__)

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def default_venv_cache_path() -> Path:
    """``[byo] venv_cache_path`` from Airflow's configuration, else ``$AIRFLOW_HOME/byo/venvs``."""
    configured = setting("venv_cache_path")
    return Path(configured).expanduser() if configured else byo_home("venvs")


def _noop() -> None:
    """Placeholder callable: the operator below only builds environments, it never runs one."""


def ensure_environment(requirements: list[str], venv_cache_path: Path | None = None) -> Path:
    """
    Return the Python executable of the cached environment for ``requirements``, building it once.

    :param requirements: validated requirement strings (see :func:`airflow_byo.packages.parse_packages`).
    :param venv_cache_path: parent folder of the cached environments.
    :raises ByoPackageError: if the installer fails (unknown package, no matching version, ...).
    """
    # Composition rather than inheritance: ByoFlowOperator is not a PythonVirtualenvOperator
    # (it runs a long-lived child over many files, not one callable), but environment preparation
    # and caching must stay identical to the standard provider's, so we drive its cache method.
    from airflow.providers.standard.operators.python import PythonVirtualenvOperator

    cache_path = Path(venv_cache_path) if venv_cache_path else default_venv_cache_path()
    builder = PythonVirtualenvOperator(
        task_id="byo_environment",
        python_callable=_noop,
        requirements=requirements,
        python_version=PYTHON_VERSION,
        system_site_packages=False,
        expect_airflow=False,
        venv_cache_path=cache_path,
    )
    try:
        venv_path = builder._ensure_venv_cache_exists(cache_path)
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise ByoPackageError(
            f"could not build the environment for packages {requirements}: {cause}. "
            "Check that each package name and pinned version exists on the package index "
            "(the installer output above names the failing one)"
        ) from exc
    return venv_path / "bin" / "python"
