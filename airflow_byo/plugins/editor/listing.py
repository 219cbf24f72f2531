"""
**Browse** (one folder through a connection) and **match** ("N of M files match" for a source
block), bounded: at most :data:`MAX_ENTRIES` entries and :data:`MAX_SECONDS` seconds, then
``truncated: true``. Local folders only under ``[byo] editor_local_roots``; S3 and SFTP through the
connection's file system (:func:`airflow_byo.filesystems.filesystem`), whose errors name the
connection and never its secrets.
"""

from __future__ import annotations

import concurrent.futures
import os
from datetime import UTC, datetime
from typing import Any

from airflow_byo.plugins.editor.options import FieldProblem
from airflow_byo.plugins.editor.page_rules import credentials_in, local_problem, source_problems
from airflow_byo.plugins.editor.settings import editor_local_roots

__all__ = ["MAX_ENTRIES", "MAX_SECONDS", "browse", "match"]

MAX_ENTRIES = 500
MAX_SECONDS = 5.0
SAMPLE = 20
#: Listings run here, so one that hangs cannot hold a request thread past MAX_SECONDS.
_LISTINGS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="byo-editor-list")


def _bounded(work: Any, *args: Any) -> tuple[Any, bool]:
    """``(result, timed_out)`` of ``work(*args)`` within :data:`MAX_SECONDS`."""
    future = _LISTINGS.submit(work, *args)
    try:
        return future.result(timeout=MAX_SECONDS), False
    except concurrent.futures.TimeoutError:
        return None, True


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds") if timestamp else None


def _local_entries(path: str) -> list[dict[str, Any]]:
    entries = []
    with os.scandir(path) as scan:
        for entry in scan:
            if entry.is_dir(follow_symlinks=False):
                kind = "dir"
            elif entry.is_file(follow_symlinks=False):
                kind = "file"
            else:
                continue  # links and special files are never a flow's files
            info = entry.stat(follow_symlinks=False)
            entries.append(
                {"name": entry.name, "kind": kind, "size": info.st_size, "modified": _iso(info.st_mtime)}
            )
            if len(entries) > MAX_ENTRIES:
                break
    return entries


def _remote_entries(kind: str, conn_id: str, path: str) -> list[dict[str, Any]]:
    from airflow_byo.filesystems import filesystem
    from airflow_byo.storage.backends.base import mtime_of

    protocol = "s3" if kind == "s3" else "sftp"
    fs, errors = filesystem(protocol, conn_id, f"{kind} folder {path or '/'!r}")
    try:
        listed = fs.ls(path, detail=True)
    except Exception as exc:  # noqa: BLE001 - translated: names the connection, secrets scrubbed
        raise errors.translate(exc, "list") from None
    entries = []
    for info in listed[: MAX_ENTRIES + 1]:
        name = str(info.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
        is_dir = info.get("type") == "directory"
        entries.append(
            {
                "name": name,
                "kind": "dir" if is_dir else "file",
                "size": info.get("size"),
                "modified": _iso(mtime_of(info)),
            }
        )
    return entries


def _browse_path(kind: str, path: str) -> str:
    """The folder to list, as its file system names it; FieldProblem for what the page may not list."""
    if kind == "local":
        if problem := local_problem(path):
            raise FieldProblem("path", problem)
        return os.path.realpath(path.removeprefix("file://"))
    if credentials_in(path):
        raise FieldProblem(
            "path", "credentials in the path (user:password@) are not allowed: pick a connection"
        )
    path = path.split("://", 1)[1] if "://" in path else path
    return path.strip("/") if kind == "s3" else "/" + path.strip("/")


def browse(body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/editor/browse``: ``{type, conn_id, path}`` -> ``{path, entries, truncated}``."""
    kind, conn_id, path = body.get("type"), body.get("conn_id"), str(body.get("path") or "").strip()
    if kind not in ("local", "s3", "sftp"):
        raise FieldProblem("type", "must be local, s3 or sftp")
    if kind == "local" and not path:  # the start: the folders the page may use
        roots = editor_local_roots()
        return {
            "path": "",
            "entries": [{"name": r, "kind": "dir", "size": None, "modified": None} for r in roots],
            "truncated": False,
        }
    if kind != "local" and (not isinstance(conn_id, str) or not conn_id):
        raise FieldProblem("conn_id", f"required: pick the Airflow connection to browse {kind} with")
    folder = _browse_path(kind, path)
    if kind == "local":
        entries, late = _bounded(_local_entries, folder)
    else:
        entries, late = _bounded(_remote_entries, kind, conn_id, folder)
    entries = sorted(entries or [], key=lambda e: (e["kind"] != "dir", e["name"]))
    answer = {
        "path": folder,
        "entries": entries[:MAX_ENTRIES],
        "truncated": late or len(entries) > MAX_ENTRIES,
    }
    if late:
        answer["error"] = f"the listing took longer than {MAX_SECONDS:g} s; type a narrower path"
    return answer


def _listing(source: Any) -> list[Any]:
    from airflow_byo.storage.location import Location
    from airflow_byo.storage.selection import FileFilter

    location = Location(source.url, source.conn_id, role="source", follow_symlinks=source.follow_symlinks)
    return location.list_files(FileFilter(recursive=source.recursive, follow_symlinks=source.follow_symlinks))


def match(body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/editor/match``: ``{source}`` -> ``{listed, matching, sample, truncated}``."""
    from pydantic import ValidationError

    from airflow_byo.exceptions import ByoError
    from airflow_byo.specs.model import SourceSpec
    from airflow_byo.storage.selection import FileFilter, parse_datetime

    raw = body.get("source")
    if not isinstance(raw, dict):
        raise FieldProblem("source", "required: the spec's source block (type, conn_id, path, include, ...)")
    if problems := source_problems(raw):
        (loc, message), *_ = problems
        raise FieldProblem(".".join(loc), message)
    try:
        source = SourceSpec.model_validate(raw)
        wanted = FileFilter(
            include=tuple(source.include),
            exclude=tuple(source.exclude),
            recursive=source.recursive,
            modified_after=parse_datetime(source.modified_after, "source.modified_after"),
            min_size=source.min_size,
            max_size=source.max_size,
            follow_symlinks=source.follow_symlinks,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        raise FieldProblem(".".join(map(str, ("source", *error["loc"]))), error["msg"]) from None
    except ByoError as exc:
        raise FieldProblem("source", str(exc)) from None
    files, late = _bounded(_listing, source)
    if late:
        return {
            "listed": None,
            "matching": None,
            "sample": [],
            "truncated": True,
            "error": f"listing the source took longer than {MAX_SECONDS:g} s",
        }
    chosen = [f.relative_path for f in files if wanted.matches(f.relative_path, f.size, f.mtime)]
    return {"listed": len(files), "matching": len(chosen), "sample": chosen[:SAMPLE], "truncated": False}
