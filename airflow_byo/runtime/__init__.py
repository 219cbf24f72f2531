"""
The part of airflow-byo that runs inside a flow's virtualenv: the processor contract and the child.

Standard library only -- the virtualenv does not contain Airflow. Processors may import the
contract types for annotations::

    from airflow_byo.runtime import Context, InputFile

    def process(file: InputFile, ctx: Context) -> list[dict]:
        ...
"""

from __future__ import annotations

from .contract import Context, InputFile, OutputError, safe_output_name

__all__ = ["Context", "InputFile", "OutputError", "safe_output_name"]
