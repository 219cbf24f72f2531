"""
Every flow spec in flows/ becomes a DAG, created paused (see airflow_byo.specs.factory).

An invalid spec takes no other flow down: every spec has a DAG file of its own in byo_spec_errors/
beside this file, which defines nothing and, while its spec is invalid, fails with an import error
naming the spec's file, line, field and fix.
"""

from pathlib import Path

from airflow_byo.specs.factory import build_dags

globals().update(build_dags(Path(__file__).parent / "flows"))
