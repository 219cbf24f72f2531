"""
Where a run's summary goes besides XCom: Airflow metrics (``byo.*``), an Asset event on the
destination (summary as ``extra``), and OpenLineage datasets (input files in, outputs out).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from airflow_byo.summary import RunSummary

__all__ = ["asset_uri", "compact", "emit_metrics", "lineage"]

#: At most this many files become OpenLineage datasets per side (lineage events must stay small).
MAX_LINEAGE_DATASETS = 1000


def asset_uri(url: str) -> str:
    """The Asset URI of a location: ``file:///abs/path`` for local directories, the URL otherwise."""
    return url if "://" in url else "file://" + os.path.abspath(url)


def compact(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without its per-file list: small enough for an Asset event's ``extra``."""
    return {key: value for key, value in summary.items() if key != "files"}


def emit_metrics(summary: dict[str, Any], flow_id: str) -> None:
    """Counters and timers under ``byo.`` (StatsD or OpenTelemetry, as Airflow is configured)."""
    from airflow.sdk.observability.stats import Stats

    tags = {"flow": flow_id}
    for key in (
        "files_processed",
        "files_failed",
        "files_quarantined",
        "files_skipped",
        "bytes_in",
        "bytes_out",
    ):
        if summary.get(key):
            Stats.incr(f"byo.{key.replace('_', '.', 1)}", summary[key], tags=tags)
    if summary.get("files_failed") or summary.get("files_quarantined"):
        Stats.incr(
            "byo.errors",
            (summary.get("files_failed") or 0) + (summary.get("files_quarantined") or 0),
            tags=tags,
        )
    Stats.timing("byo.run.duration", summary["seconds_total"] * 1000, tags=tags)
    if summary.get("seconds_per_file_p50") is not None:
        Stats.timing("byo.file.duration.p50", summary["seconds_per_file_p50"] * 1000, tags=tags)


def _dataset(url: str) -> tuple[str, str]:
    """OpenLineage (namespace, name) of a file URL or local path."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return "file", os.path.abspath(parsed.path or url)
    return f"{parsed.scheme}://{parsed.netloc}", parsed.path.lstrip(
        "/"
    ) if parsed.scheme == "s3" else parsed.path


def lineage(summary: RunSummary, destination_url: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Input files and outputs of a run as (namespace, name) pairs, processed files only."""
    processed = [f for f in summary.files if f.status == "processed"][:MAX_LINEAGE_DATASETS]
    inputs = [_dataset(f.url) for f in processed]
    base = destination_url.rstrip("/")
    outputs = [_dataset(f"{base}/{name}") for f in processed for name in f.outputs][:MAX_LINEAGE_DATASETS]
    return inputs, outputs
