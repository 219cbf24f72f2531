"""How the in-process benchmarks run a flow: ``ByoFlowOperator.execute`` with the ledger."""

from __future__ import annotations

import sys
import uuid
from typing import Any

__all__ = ["execute_flow"]


class _TaskInstance:
    """What ``execute`` uses of a task instance outside a task: somewhere to push the summary."""

    def xcom_push(self, key: str, value: Any) -> None:
        pass


def execute_flow(figure: str, expected: int, **operator_kwargs: Any) -> dict[str, Any]:
    """
    One ``ByoFlowOperator`` run in this interpreter (``python_interpreter=sys.executable``: no
    environment build) under a fresh ``flow_id``, so every file is new to the ledger; its summary.

    :param figure: the figure's name, for the task id and the error.
    :param expected: files the run must process, else ``RuntimeError``.
    """
    from airflow_byo.operators.byo_flow import ByoFlowOperator

    operator = ByoFlowOperator(
        task_id=figure.lower(),
        flow_id=f"bench-{figure.lower()}-{uuid.uuid4().hex}",
        python_interpreter=sys.executable,
        **operator_kwargs,
    )
    context: Any = {"params": {}, "ti": _TaskInstance()}  # what execute() reads of a task context
    summary: dict[str, Any] = operator.execute(context)
    if summary["files_processed"] != expected:
        raise RuntimeError(f"{figure}: {summary['files_processed']} of {expected} files processed: {summary}")
    return summary
