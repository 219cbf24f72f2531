"""
Which cached flow environment ``byo test`` may reuse without asking Airflow.

The standard provider names a cached virtualenv by a hash that includes an Airflow Variable
(``python_virtualenv_operator_cache_key``), so finding it means importing Airflow and reading the
metadata DB: seconds. Each time ``byo test`` resolves an environment through Airflow it notes the
result here (``<cache>/byo-index/<key>.json``: the interpreter and the environment's own
``install_complete_marker.json``); next time it reuses that interpreter while the marker is
unchanged, i.e. while the environment is the one the provider built and has not been rebuilt or
removed. A changed cache-key Variable is seen the next time the environment is resolved through
Airflow (a cold start, or ``airflow byo test``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

__all__ = ["lookup", "remember", "warm_or_build"]

_MARKER = "install_complete_marker.json"


def _record(cache: Path, requirements: list[str]) -> Path:
    key = json.dumps({"requirements": requirements, "python": sys.version_info[:2]}, sort_keys=True)
    return cache / "byo-index" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def lookup(cache: Path, requirements: list[str]) -> str | None:
    """The interpreter of the environment noted for ``requirements``, if it is still the same one."""
    try:
        noted = json.loads(_record(cache, requirements).read_text(encoding="utf-8"))
        python = Path(noted["python"])
        marker = (python.parent.parent / _MARKER).read_text(encoding="utf8")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(python) if marker == noted["marker"] and os.access(python, os.X_OK) else None


def remember(cache: Path, requirements: list[str], python: str) -> None:
    """Note the environment Airflow's machinery gave for ``requirements`` (best effort)."""
    record = _record(cache, requirements)
    try:
        marker = (Path(python).parent.parent / _MARKER).read_text(encoding="utf8")
        record.parent.mkdir(parents=True, exist_ok=True)
        temporary = record.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"python": python, "marker": marker}), encoding="utf-8")
        os.replace(temporary, record)
    except OSError:
        pass  # the next run asks Airflow again


def warm_or_build(requirements: list[str], cache: Path | None) -> str:
    """
    The ``byo`` script's way to a flow environment: a noted warm one, else built through Airflow's
    machinery (which imports Airflow, once) and noted for next time.
    """
    from airflow_byo.environment import default_venv_cache_path, ensure_environment

    cache = cache or default_venv_cache_path()
    if python := lookup(cache, requirements):
        return python
    import airflow.providers.standard.operators.python  # noqa: F401 - sets up Airflow (and its logs) once

    from airflow_byo.cli.preview_text import quiet_logging

    if not logging.getLogger("airflow_byo.test").isEnabledFor(logging.INFO):
        quiet_logging()  # again: structlog is loaded now
    python = str(ensure_environment(requirements, cache))
    remember(cache, requirements, python)
    return python
