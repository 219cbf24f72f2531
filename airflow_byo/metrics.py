"""A run's summary as Airflow metrics under ``byo.`` (StatsD or OpenTelemetry, as Airflow is configured)."""

from __future__ import annotations

from typing import Any

__all__ = ["emit_metrics"]

_COUNTED = ("files_processed", "files_failed", "files_quarantined", "files_skipped", "bytes_in", "bytes_out")


def emit_metrics(summary: dict[str, Any], flow_id: str) -> None:
    """Counters (``byo.files.processed``, ``byo.errors``, ...) and timers, tagged with the flow."""
    from airflow.sdk.observability.stats import Stats

    tags = {"flow": flow_id}
    for key in _COUNTED:
        if summary.get(key):
            Stats.incr(f"byo.{key.replace('_', '.', 1)}", summary[key], tags=tags)
    errors = (summary.get("files_failed") or 0) + (summary.get("files_quarantined") or 0)
    if errors:
        Stats.incr("byo.errors", errors, tags=tags)
    Stats.timing("byo.run.duration", summary["seconds_total"] * 1000, tags=tags)
    if summary.get("seconds_per_file_p50") is not None:
        Stats.timing("byo.file.duration.p50", summary["seconds_per_file_p50"] * 1000, tags=tags)
