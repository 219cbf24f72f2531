"""
Where a run's results are declared as data lineage: the destination's Asset URI and event
``extra``, and OpenLineage datasets (input files in, published outputs out).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from airflow_byo.results import RunSummary

__all__ = ["MAX_LINEAGE_DATASETS", "asset_uri", "compact", "lineage"]

#: At most this many files become OpenLineage datasets per side (lineage events must stay small).
MAX_LINEAGE_DATASETS = 1000


def asset_uri(url: str) -> str:
    """The Asset URI of a location: ``file:///abs/path`` for local directories, the URL otherwise."""
    return url if "://" in url else "file://" + os.path.abspath(os.path.expanduser(url))


def compact(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without its per-file list: small enough for an Asset event's ``extra``."""
    return {key: value for key, value in summary.items() if key != "files"}


def _dataset(url: str) -> tuple[str, str]:
    """OpenLineage (namespace, name) of a file URL or local path."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return "file", os.path.abspath(parsed.path or url)
    name = parsed.path.lstrip("/") if parsed.scheme == "s3" else parsed.path
    return f"{parsed.scheme}://{parsed.netloc}", name


def lineage(summary: RunSummary) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Input files and their published outputs as (namespace, name) pairs, processed files only."""
    processed = [f for f in summary.files if f.status == "processed"][:MAX_LINEAGE_DATASETS]
    inputs = [_dataset(f.url) for f in processed]
    outputs = [_dataset(url) for f in processed for url in f.output_urls][:MAX_LINEAGE_DATASETS]
    return inputs, outputs
