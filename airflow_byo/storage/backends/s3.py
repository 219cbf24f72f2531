"""
S3 (and S3-compatible stores through the connection's ``endpoint_url``), over s3fs.

* **Listing**: ListObjectsV2 page by page, each page turned into :class:`SourceFile` s as it comes
  (see :meth:`S3Backend.list_files`).
* **Reading**: one streamed GET per input (see :meth:`S3Backend.download_options`).
* **Publishing**: one PUT, or a multipart upload in parts of 8 MiB or more, two at a time, that
  only becomes an object when completed: nothing partial is ever listed. s3fs aborts it on a
  failure; a killed worker's stays (invisible to listings, but billed) until aborted.
* **Sweeping**: the incomplete multipart uploads under the destination's prefix, once idle past
  the stale age (:func:`~airflow_byo.storage.backends.base.stale_age`): S3 gives an upload no
  name of its own (its key is the final key), so whose it is cannot be told.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.filesystems import S3_PROTOCOLS
from airflow_byo.storage.backends.base import PendingOutput, SourceFile, etag_of
from airflow_byo.storage.backends.remote import RemoteBackend
from airflow_byo.storage.local_files import open_staged_source

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_byo.results import StagedOutput
    from airflow_byo.storage.selection import FileFilter

__all__ = ["S3Backend", "S3Pending"]

log = logging.getLogger(__name__)

_PART_BYTES = 8 * 1024 * 1024
_MAX_PARTS = 10_000
_MAX_KEY_BYTES = 1024


class S3Backend(RemoteBackend):
    """A prefix of an S3 bucket (``s3://bucket/prefix``); paths are ``bucket/prefix/...``."""

    protocols = S3_PROTOCOLS
    rooted = False

    def list_files(self, file_filter: FileFilter) -> list[SourceFile]:
        """
        Every object under the prefix (``recursive=False``: directly under it), page by page: each
        page of ListObjectsV2 becomes :class:`SourceFile` s before the next is asked for. s3fs's
        ``find`` held every object's full entry (~1.7 KB) until the end and then kept ~1.3 KB per
        object in its listing cache for the file system's lifetime: a run over 20,000 objects grew
        the task by 45 MB, 21 MB since (issue 24, bench W2). Folder markers (keys ending in ``/``)
        are not files.
        """
        bucket, _, prefix = self.root_path.partition("/")
        prefix = f"{prefix}/" if prefix else ""
        below = {} if file_filter.recursive else {"Delimiter": "/"}
        files: list[SourceFile] = []
        found_any = False
        for page in self._listing_pages(Bucket=bucket, Prefix=prefix, **below):
            found_any = found_any or bool(page.get("Contents") or page.get("CommonPrefixes"))
            for item in page.get("Contents", ()):
                relative = item["Key"][len(prefix) :]
                if not relative or relative.endswith("/"):
                    continue
                size, mtime = int(item.get("Size") or 0), item["LastModified"].timestamp()
                if file_filter.matches(relative, size, mtime):
                    files.append(SourceFile(self.url_for(relative), relative, size, mtime, etag_of(item)))
        if not found_any and not self.retry(lambda: self.fs.isdir(self.root_path), "list"):
            raise self.missing()
        files.sort(key=lambda f: f.relative_path)
        return files

    def _listing_pages(self, **request: Any) -> Iterator[dict[str, Any]]:
        """The pages of ListObjectsV2 ``request``, each asked for when the previous is used."""
        while True:
            ask = functools.partial(self.fs.call_s3, "list_objects_v2", **request)
            page: dict[str, Any] = self.retry(ask, "list")
            yield page
            if not page.get("IsTruncated"):
                return
            request["ContinuationToken"] = page["NextContinuationToken"]

    def download_options(self) -> dict[str, Any]:
        """
        One streamed GET (s3fs writes 64 KiB reads to the file as they come), not s3fs's default of
        ranged GETs 10 at a time, each range held in memory (50 MiB x 10 per file). A run already
        downloads ``transfer_concurrency`` files at once, so ranges add requests and memory, not
        speed; against moto's server, where every ranged GET reads the whole object, they made a
        200 MB download 2-9x slower.
        """
        return {"max_concurrency": 1}

    def upload_options(self, size: int) -> dict[str, Any]:
        """
        How one upload runs, memory bounded whatever the file size: s3fs holds chunksize x
        max_concurrency bytes per put (50 MiB x 10 by default).
        """
        return {"chunksize": max(_PART_BYTES, math.ceil(size / _MAX_PARTS)), "max_concurrency": 2}

    def prepare_publish(self, source: str | StagedOutput, name: str) -> S3Pending:
        """Check the key; nothing is uploaded before the commit (a PUT is already atomic)."""
        if len(self.path_for(name).partition("/")[2].encode()) > _MAX_KEY_BYTES:
            raise ByoStorageError(
                f"cannot write output {name!r} to {self.describe()}: S3 keys are at most 1024 bytes; "
                "choose a shorter output name"
            )
        return S3Pending(self, name, source)

    def sweep_stale_uploads(self, older_than: float) -> list[str]:
        super().sweep_stale_uploads(older_than)
        return self.swept(lambda: self._abort_stale_multipart(older_than))

    def _abort_stale_multipart(self, older_than: float) -> list[str]:
        """Abort the incomplete multipart uploads under the prefix idle for ``older_than`` seconds."""
        bucket, _, prefix = self.root_path.partition("/")
        prefix = f"{prefix}/" if prefix else ""
        cutoff = time.time() - older_than
        removed = []
        for upload in self._multipart_uploads(bucket, prefix):
            # Idle: started before the cut-off and no part since (a live upload keeps adding parts).
            initiated = upload["Initiated"]
            if initiated.timestamp() >= cutoff or self._last_part(bucket, upload) >= cutoff:
                continue
            key, upload_id = upload["Key"], upload["UploadId"]
            abort = functools.partial(
                self.fs.call_s3, "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id
            )
            self.retry(abort, "delete")
            url = self.url_for(key[len(prefix) :])
            removed.append(url)
            log.warning(
                "Aborted an incomplete multipart upload of %s started %s, no part for %.0f s: left by a "
                "killed worker",
                url,
                initiated.isoformat(),
                older_than,
            )
        return removed

    def _last_part(self, bucket: str, upload: dict[str, Any]) -> float:
        """When the newest part of a multipart upload was uploaded (0 without parts)."""
        newest, marker = 0.0, 0
        while True:
            page = self.retry(
                functools.partial(
                    self.fs.call_s3,
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

    def _multipart_uploads(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        """Every incomplete multipart upload under ``prefix`` (ListMultipartUploads, page by page)."""
        markers: dict[str, str] = {}
        while True:
            page = self.retry(
                functools.partial(
                    self.fs.call_s3, "list_multipart_uploads", Bucket=bucket, Prefix=prefix, **markers
                ),
                "list",
            )
            yield from page.get("Uploads", [])
            if not page.get("IsTruncated"):
                return
            markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}


class S3Pending(PendingOutput):
    """Uploaded on commit: the object appears complete, or not at all."""

    backend: S3Backend

    def __init__(self, backend: S3Backend, name: str, source: str | StagedOutput) -> None:
        super().__init__(backend, name)
        self.source = source

    def _commit(self) -> None:
        backend, final = self.backend, self.backend.path_for(self.name)
        fd = open_staged_source(self.source)  # s3fs opens paths: it gets this checked file's
        try:
            local = f"/proc/self/fd/{fd}"
            options = backend.upload_options(os.fstat(fd).st_size)
            backend.retry(lambda: backend.fs.put_file(local, final, **options), "write")
        finally:
            os.close(fd)

    def _retract(self) -> None:
        final = self.backend.path_for(self.name)
        self.backend.retry(lambda: self.backend.fs.rm_file(final), "delete")
