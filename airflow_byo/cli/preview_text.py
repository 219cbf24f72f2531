"""
What ``airflow byo test`` and ``byo test`` print: the preview, the insights, one result line.

Nothing else reaches the terminal unless ``-v`` is given: :func:`quiet_logging` silences the
structlog lines Airflow and the operator write while the test runs (they repeated every preview
inside a log line).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow_byo.runner.preview import format_previews

__all__ = ["VERBOSE_HINT", "quiet_logging", "result_text"]

VERBOSE_HINT = "(-v shows the log, with the processor's traceback)"


def result_text(result: dict[str, Any]) -> str:
    """A test's result (the run summary with ``preview``) as the lines the CLI prints."""
    lines = format_previews(result["preview"], heading="== ") or ["(no output)"]
    for key, value in {
        **result["insights"],
        **{f"counter {k}": v for k, v in result["counters"].items()},
    }.items():
        lines.append(f"insight {key}: {json.dumps(value, default=str)}")
    lines.append(
        f"ok: {result['files'][0]['url']} in {result['seconds_total']}s (sandbox: {result['sandbox']}); "
        "nothing was written"
    )
    return "\n".join(lines)


def quiet_logging() -> None:
    """Drop every log line of this process: stdlib logging and (when loaded) structlog."""
    logging.disable(logging.CRITICAL)
    import sys

    if "structlog" in sys.modules:  # Airflow's loggers; the operator's is created on first use
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
