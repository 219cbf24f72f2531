"""The provider's ``[byo]`` configuration section, and where its files live by default."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["byo_home", "setting"]


def setting(name: str) -> str:
    """``[byo] <name>`` from Airflow's configuration (``AIRFLOW__BYO__<NAME>``), or ``""``."""
    from airflow.providers.common.compat.sdk import conf

    return str(conf.get("byo", name, fallback="") or "")


def byo_home(*parts: str) -> Path:
    """``$AIRFLOW_HOME/byo/<parts>``: the embedded defaults of one machine."""
    from airflow.providers.common.compat.sdk import conf

    airflow_home = os.environ.get("AIRFLOW_HOME") or conf.get("core", "airflow_home", fallback="~/airflow")
    return Path(airflow_home).expanduser().joinpath("byo", *parts)
