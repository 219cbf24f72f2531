"""
What the Test button may read: a file of the flow's own source that the flow would take.

A test reads a local path under the flow's source, or a URL under it read with the flow's source
connection -- never the api-server's own files -- and only a file the flow's filters let through
(include and exclude globs, and where the page knows them sizes and ``modified_after``): a Test
on a file the flow never processes would show a preview no run ever makes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoConfigError

if TYPE_CHECKING:
    from airflow_byo.plugins.flows import Flow
    from airflow_byo.storage.selection import FileFilter

__all__ = ["flow_file_filter", "resolve_test_file", "source_listing", "why_not_taken"]


def _is_url(value: str) -> bool:
    return "://" in value and not value.startswith("file://")


def flow_file_filter(flow: Flow) -> FileFilter:
    """The flow's file filter, from the settings the page has of it."""
    from airflow_byo.storage.selection import FileFilter

    settings = flow.settings
    return FileFilter(
        include=tuple(settings.get("include") or ("*",)),
        exclude=tuple(settings.get("exclude") or ()),
        modified_after=settings.get("modified_after") or None,
        min_size=settings.get("min_size"),
        max_size=settings.get("max_size"),
    )


def why_not_taken(
    file_filter: FileFilter, relative_path: str, size: int | None = None, mtime: float | None = None
) -> str | None:
    """Which of the flow's filters drops ``relative_path`` (with its size and mtime, when known)."""
    from airflow_byo.storage.selection import FileFilter

    if not FileFilter(include=file_filter.include).matches_name(relative_path):
        return f"the flow's include filter {list(file_filter.include)} does not match it"
    if file_filter.exclude and FileFilter(include=file_filter.exclude).matches_name(relative_path):
        return f"the flow's exclude filter {list(file_filter.exclude)} matches it"
    if size is not None and file_filter.min_size is not None and size < file_filter.min_size:
        return f"it is {size} bytes, under the flow's min_size={file_filter.min_size}"
    if size is not None and file_filter.max_size is not None and size > file_filter.max_size:
        return f"it is {size} bytes, over the flow's max_size={file_filter.max_size}"
    after = file_filter.modified_after
    if after is not None and mtime is not None and mtime <= after.timestamp():
        modified = datetime.fromtimestamp(mtime, UTC).isoformat(timespec="seconds")
        return f"it was modified {modified}, not after the flow's modified_after={after.isoformat()}"
    return None


def _refuse_filtered(flow: Flow, test_file: str, relative_path: str, local: str | None = None) -> None:
    """Refuse a file the flow's filters drop, naming the filter."""
    stat = os.stat(local) if local else None
    reason = why_not_taken(
        flow_file_filter(flow), relative_path, stat.st_size if stat else None, stat.st_mtime if stat else None
    )
    if reason:
        raise ByoConfigError(
            f"test_file: the flow never processes {test_file!r}: {reason}; pick a file the flow "
            "takes (the list shows them), or change the flow's filters"
        )


def resolve_test_file(flow: Flow, test_file: str) -> str:
    """``test_file`` (a name in the source, or a path/URL under it) as a path or URL, checked."""
    source = str(flow.settings.get("source") or "")
    test_file = test_file.strip()
    if not test_file:
        raise ByoConfigError("test_file: give the path of one file of the flow's source, or pick one")
    if not source or "{{" in source:
        raise ByoConfigError(
            "this flow's source is templated; the page can only test files of a fixed source"
        )
    if _is_url(source):
        prefix = source.rstrip("/") + "/"
        wanted = test_file if _is_url(test_file) else f"{prefix}{test_file.lstrip('/')}"
        if not wanted.startswith(prefix) or "/../" in wanted:
            raise ByoConfigError(f"test_file: {test_file!r} is not a file of the flow's source {source}")
        _refuse_filtered(flow, test_file, wanted.removeprefix(prefix))
        return wanted
    root = os.path.realpath(source.removeprefix("file://"))
    path = test_file.removeprefix("file://")
    path = os.path.realpath(path if os.path.isabs(path) else os.path.join(root, path))
    if os.path.commonpath([root, path]) != root or path == root:
        raise ByoConfigError(
            f"test_file: {test_file!r} is not a file of the flow's source {source}; "
            "the page tests files of the flow's own source only"
        )
    if not os.path.isfile(path):
        raise ByoConfigError(
            f"test_file: {path} does not exist (or is not a file) in the flow's source {source}"
        )
    _refuse_filtered(flow, test_file, os.path.relpath(path, root).replace(os.sep, "/"), path)
    return path


def source_listing(flow: Flow, limit: int = 200) -> list[dict[str, Any]]:
    """The newest files the flow takes from its source (name, size, modified), read with its connection."""
    from airflow_byo.storage.location import Location

    source = str(flow.settings.get("source") or "")
    if not source or "{{" in source:
        return []
    location = Location(source, flow.settings.get("source_conn_id"), role="source")
    files = sorted(location.list_files(flow_file_filter(flow)), key=lambda f: -(f.mtime or 0))[:limit]
    return [{"name": f.relative_path, "size": f.size, "modified": f.mtime} for f in files]
