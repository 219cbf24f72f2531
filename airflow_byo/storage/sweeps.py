"""
Remote leftovers of killed workers, removed when the next run starts publishing (issue 13).

A worker killed with SIGKILL cannot clean up what it was uploading: an S3 multipart upload stays
(invisible to listings, but billed) until aborted, an SFTP upload temporary (``.byo-*``) stays
next to its final name. Both are removed here once idle for longer than any live upload is:
an S3 upload whose start and newest part are older than the cut-off, an SFTP temporary not
written to since. Everything removed is logged and returned.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from airflow_byo.scratch import TEMP_MARKER

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_byo.storage.location import Location

__all__ = ["abort_stale_multipart", "sweep_remote_dir"]

log = logging.getLogger(__name__)


def abort_stale_multipart(location: Location, older_than: float) -> list[str]:
    """Abort the incomplete multipart uploads under an S3 location idle for ``older_than`` seconds."""
    # s3fs gives uploads no name of their own (the upload's key is the final key), so idleness
    # under the destination prefix is what tells a dead run's upload from a live one (#13).
    bucket, _, prefix = location.root_path.partition("/")
    prefix = f"{prefix}/" if prefix else ""
    cutoff = time.time() - older_than
    removed = []
    for upload in _multipart_uploads(location, bucket, prefix):
        # Stale when nothing happened for ``older_than``: started long ago and no part since.
        # A live run's long upload keeps adding parts, so it is never taken for a dead one.
        initiated = upload["Initiated"]
        if initiated.timestamp() >= cutoff or _last_part(location, bucket, upload) >= cutoff:
            continue
        key, upload_id = upload["Key"], upload["UploadId"]
        location._retry(
            lambda key=key, upload_id=upload_id: location.fs.call_s3(
                "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id
            ),
            "delete",
        )
        removed.append(f"s3://{bucket}/{key}")
        log.warning(
            "Aborted an incomplete multipart upload of s3://%s/%s started %s, no part for %.0f s: "
            "left by a killed worker",
            bucket,
            key,
            initiated.isoformat(),
            older_than,
        )
    return removed


def sweep_remote_dir(location: Location, directory: str, older_than: float) -> list[str]:
    """Delete ``.byo-`` upload temporaries older than ``older_than`` in one remote directory."""
    cutoff = time.time() - older_than
    removed = []
    try:
        entries = location.fs.ls(directory, detail=True)
    except FileNotFoundError:
        return []
    for entry in entries:
        name = str(entry["name"]).rsplit("/", 1)[-1]
        mtime = mtime_of(entry)
        if (
            name.startswith(TEMP_MARKER)
            and entry.get("type") == "file"
            and mtime is not None
            and mtime < cutoff
        ):
            with contextlib.suppress(FileNotFoundError):
                location.fs.rm_file(entry["name"])
                removed.append(str(entry["name"]))
                log.warning(
                    "Removed a stale upload temporary %s of %s (older than %.0f s: left by a killed worker)",
                    entry["name"],
                    location.describe(),
                    older_than,
                )
    return removed


def mtime_of(entry: dict[str, Any]) -> float | None:
    value = entry.get("mtime")
    if value is None:
        return None
    return float(value.timestamp()) if hasattr(value, "timestamp") else float(value)


def _last_part(location: Location, bucket: str, upload: dict[str, Any]) -> float:
    """When the newest part of a multipart upload was uploaded (0 without parts)."""
    newest, marker = 0.0, 0
    while True:
        page = location._retry(
            lambda marker=marker: location.fs.call_s3(
                "list_parts",
                Bucket=bucket,
                Key=upload["Key"],
                UploadId=upload["UploadId"],
                PartNumberMarker=marker,
            ),
            "list",
        )
        newest = max([newest, *(part["LastModified"].timestamp() for part in page.get("Parts", []))])
        if not page.get("IsTruncated"):
            return newest
        marker = int(page["NextPartNumberMarker"])


def _multipart_uploads(location: Location, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every incomplete multipart upload under ``prefix`` (ListMultipartUploads, page by page)."""
    markers: dict[str, str] = {}
    while True:
        page = location._retry(
            lambda markers=markers: location.fs.call_s3(
                "list_multipart_uploads", Bucket=bucket, Prefix=prefix, **markers
            ),
            "list",
        )
        yield from page.get("Uploads", [])
        if not page.get("IsTruncated"):
            return
        markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
