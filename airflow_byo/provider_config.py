"""The provider's ``[byo]`` configuration section, and where its files live by default."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

__all__ = ["STANDALONE", "byo_home", "setting"]

#: Set by the ``byo`` console script before it imports anything else of the provider: read
#: ``[byo]`` settings from the environment and ``airflow.cfg`` without importing Airflow (seconds
#: of start-up), and let errors be plain exceptions. Airflow's own configuration is still used for
#: what only it can answer (``*_cmd`` / ``*_secret`` options, secrets backends).
STANDALONE = False


def setting(name: str) -> str:
    """``[byo] <name>`` from Airflow's configuration (``AIRFLOW__BYO__<NAME>``), or ``""``."""
    if STANDALONE:
        value = _standalone_setting(name)
        if value is not None:
            return value
    from airflow.providers.common.compat.sdk import conf

    return str(conf.get("byo", name, fallback="") or "")


def byo_home(*parts: str) -> Path:
    """``$AIRFLOW_HOME/byo/<parts>``: the embedded defaults of one machine."""
    airflow_home = os.environ.get("AIRFLOW_HOME")
    if not airflow_home and STANDALONE:
        airflow_home = "~/airflow"  # Airflow's own default of [core] airflow_home
    if not airflow_home:
        from airflow.providers.common.compat.sdk import conf

        airflow_home = conf.get("core", "airflow_home", fallback="~/airflow")
    return Path(airflow_home).expanduser().joinpath("byo", *parts)


def _standalone_setting(name: str) -> str | None:
    """
    ``[byo] <name>`` as Airflow would read it -- environment, then ``airflow.cfg``, then the
    provider's default -- or ``None`` when only Airflow can tell (a ``_cmd``/``_secret`` form).
    """
    variable = f"AIRFLOW__BYO__{name.upper()}"
    if variable in os.environ:
        return os.environ[variable]
    if f"{variable}_CMD" in os.environ or f"{variable}_SECRET" in os.environ:
        return None
    home = Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()
    path = Path(os.environ.get("AIRFLOW_CONFIG") or home / "airflow.cfg").expanduser()
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error:
        return None  # Airflow reports the broken file its own way
    if parser.has_option("byo", f"{name}_cmd") or parser.has_option("byo", f"{name}_secret"):
        return None
    if parser.has_option("byo", name):
        return parser.get("byo", name)
    from airflow_byo.get_provider_info import get_provider_info

    options = get_provider_info()["config"]["byo"]["options"]
    return str(options[name]["default"] or "") if name in options else ""
