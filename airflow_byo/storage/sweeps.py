"""
Remote leftovers of killed workers, removed when the next run starts publishing (issue 13).

A worker killed with SIGKILL cannot clean up what it was uploading: an S3 multipart upload stays
(invisible to listings, but billed) until aborted, an SFTP upload temporary (``.byo-up-*``) stays
next to its final name. A run removes those of its own destination only: S3 uploads under the
destination's prefix, SFTP temporaries in the directories it publishes to.

When a leftover is stale, so that a live run never loses an upload:

* An SFTP temporary is named after its writer: ``.byo-up-<machine>-<pid>-<random>-<name>``, where
  ``<machine>`` hashes the host name, the kernel's boot id and the PID namespace (two containers
  with one host name do not share process ids). One written by a process of *this* machine that
  is gone is removed at once, whatever its age: a dead process writes nothing more.
* Everything else -- S3 multipart uploads (S3 gives an upload no name of its own: its key is the
  final key), temporaries of other machines, of a live process id (maybe reused), or of older
  releases -- is removed once idle for longer than the flow's lease *and* :data:`STALE_FLOOR_SECONDS`.

Why not the lease alone (an earlier attempt, reverted): a lease says when another run may take
over a *claim*, not that no upload of the claiming run is in flight. A live run's upload can sit
idle for a while (the first temporary of a multi-output file waits for the others before the
commit; one part of a large S3 upload takes minutes on a slow link), while a lease can be one
second long (the tests use that), so a renewal delayed on a busy worker would abort a live upload.
The floor is far longer than any part or a commit wait takes; a longer lease raises it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from airflow_byo.scratch import TEMP_MARKER

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_byo.storage.location import Location

__all__ = [
    "STALE_FLOOR_SECONDS",
    "abort_stale_multipart",
    "stale_age",
    "sweep_remote_dir",
    "upload_temporary",
]

log = logging.getLogger(__name__)

#: Idle time after which an upload whose writer cannot be checked belongs to no live run: an
#: hour, far longer than one S3 part or an output's wait for its commit takes.
STALE_FLOOR_SECONDS = 3600.0
_UPLOAD_TEMP = f"{TEMP_MARKER}up-"
_WRITER = re.compile(rf"^{re.escape(_UPLOAD_TEMP)}(?P<machine>[0-9a-f]{{10}})-(?P<pid>\d+)-[0-9a-f]{{8}}-")
_MAX_NAME_BYTES = 255


def stale_age(lease_seconds: float) -> float:
    """How long an upload of unknown writer must be idle to be swept: the lease, at least the floor."""
    return max(float(lease_seconds), STALE_FLOOR_SECONDS)


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


@functools.cache
def _machine() -> str:
    """This host, kernel boot and PID namespace, hashed: process ids mean the same within one."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    identity = "\n".join([socket.gethostname(), _read("/proc/sys/kernel/random/boot_id"), namespace])
    return hashlib.sha256(identity.encode()).hexdigest()[:10]


def upload_temporary(final: str) -> str:
    """The temporary an SFTP upload to ``final`` writes first: in its directory, named after its writer."""
    head, _, tail = final.rpartition("/")
    prefix = f"{_UPLOAD_TEMP}{_machine()}-{os.getpid()}-{uuid.uuid4().hex[:8]}-"
    room = _MAX_NAME_BYTES - len(prefix)  # the final name is only there to be read by people
    tail = tail.encode()[:room].decode(errors="ignore")
    return f"{head}/{prefix}{tail}"


def _writer_is_dead(name: str) -> bool:
    """Whether ``name`` is a temporary written by a process of this machine that is gone."""
    match = _WRITER.match(name)
    if match is None or match["machine"] != _machine():
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # another user's live process; not a process id
        return False
    return False


def abort_stale_multipart(location: Location, older_than: float) -> list[str]:
    """Abort the incomplete multipart uploads under an S3 location idle for ``older_than`` seconds."""
    bucket, _, prefix = location.root_path.partition("/")
    prefix = f"{prefix}/" if prefix else ""
    cutoff = time.time() - older_than
    removed = []
    for upload in _multipart_uploads(location, bucket, prefix):
        # Idle: started before the cut-off and no part since (a live upload keeps adding parts).
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
        url = location.url_for(key[len(prefix) :])
        removed.append(url)
        log.warning(
            "Aborted an incomplete multipart upload of %s started %s, no part for %.0f s: left by a "
            "killed worker",
            url,
            initiated.isoformat(),
            older_than,
        )
    return removed


def sweep_remote_dir(location: Location, directory: str, older_than: float) -> list[str]:
    """
    Delete the stale upload temporaries of one remote directory: those of dead processes of this
    machine, and any not written to for ``older_than`` seconds.
    """
    cutoff = time.time() - older_than
    removed = []
    try:
        entries = location.fs.ls(directory, detail=True)
    except FileNotFoundError:
        return []
    root = location.root_path.rstrip("/") + "/"
    for entry in entries:
        path = str(entry["name"])
        name = path.rsplit("/", 1)[-1]
        if not name.startswith(TEMP_MARKER) or entry.get("type") != "file":
            continue
        dead = _writer_is_dead(name)
        mtime = mtime_of(entry)
        if not dead and (mtime is None or mtime >= cutoff):
            continue
        with contextlib.suppress(FileNotFoundError):
            location.fs.rm_file(path)
            url = location.url_for(path[len(root) :] if path.startswith(root) else name)
            removed.append(url)
            log.warning(
                "Removed a stale upload temporary %s of %s (%s: left by a killed worker)",
                url,
                location.describe(),
                "its writer on this machine is gone" if dead else f"older than {older_than:.0f} s",
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
