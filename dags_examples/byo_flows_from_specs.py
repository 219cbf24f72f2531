"""Every flow spec in flows/ becomes a DAG, created paused (see airflow_byo.specs.factory)."""

from pathlib import Path

from airflow_byo.specs.factory import build_dags

globals().update(build_dags(Path(__file__).parent / "flows"))
