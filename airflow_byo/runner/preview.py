"""
Test mode: run the processor on one sample file, show what it would write, write nothing.

One module for every way in: ``airflow tasks test ... -t '{"test_file": ...}'`` (the operator),
``airflow byo test`` (the CLI) and the UI page. :func:`locate_test_file` turns what a user typed
into a file, :func:`preview_file` runs it, :func:`format_previews` makes the text both the task
log and the CLI show.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow_byo.runner.progress import log_file_result
from airflow_byo.runner.transfers import FetchedFile, stage_now
from airflow_byo.scratch import scratch
from airflow_byo.storage.location import Location
from airflow_byo.summary import FileResult, RunSummary

if TYPE_CHECKING:
    from airflow_byo.runner.flow_runner import FlowRunner
    from airflow_byo.storage.location import SourceFile

__all__ = ["OutputPreview", "format_previews", "locate_test_file", "preview_file"]

_PREVIEW_MAX_BYTES = 64 * 1024


@dataclass
class OutputPreview:
    """The first lines of one output, shown by test mode."""

    name: str
    size: int
    records: int | None
    lines: list[str]
    truncated: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_preview(local_path: str, max_lines: int) -> tuple[list[str], bool]:
    """Read at most ``max_lines`` lines (and 64 KB) of an output; binary shows as hex."""
    with open(local_path, "rb") as handle:
        head = handle.read(_PREVIEW_MAX_BYTES + 1)
    more_bytes = len(head) > _PREVIEW_MAX_BYTES
    head = head[:_PREVIEW_MAX_BYTES]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte character cut at the 64 KB mark
            return [f"<binary, first bytes: {head[:64].hex(' ')}>"], True
        text = head[: exc.start].decode("utf-8")
    lines = text.splitlines()
    return lines[:max_lines], more_bytes or len(lines) > max_lines


def locate_test_file(test_file: str, conn_id: str | None) -> tuple[Location, SourceFile]:
    """
    The sample a user named: a local path (``~`` expanded, relative to the working directory,
    ``file://`` accepted) or a URL read with ``conn_id`` (the flow's source connection).
    """
    if "://" in test_file and not test_file.startswith("file://"):
        parent, _, name = test_file.rstrip("/").rpartition("/")
        location = Location(parent, conn_id, role="test_file")
    else:
        path = os.path.abspath(os.path.expanduser(test_file.removeprefix("file://")))
        parent, name = os.path.split(path)
        location = Location(parent, role="test_file")
    return location, location.file_info(name)


def preview_file(
    runner: FlowRunner, location: Location, file: SourceFile
) -> tuple[RunSummary, list[OutputPreview]]:
    """Run the processor on one file and return previews of its outputs; write nothing."""
    summary = RunSummary(
        source=file.url, destination=None, test_mode=True, files_seen=1, sandbox=runner.sandbox
    )
    previews: list[OutputPreview] = []
    started = time.monotonic()
    with (
        scratch("test") as out_root,
        scratch("inputs") as staging,
        runner.children(inputs=location.url if location.is_local else staging, outputs=out_root) as children,
    ):
        item = FetchedFile(0, file, os.path.join(out_root, "000000"), stage_now(location, file, staging))
        outcome = runner.process(children, item)
        result = FileResult(
            url=file.url,
            status="processed" if outcome.ok else "failed",
            size=file.size,
            seconds=outcome.seconds,
        )
        result.error_type, result.error = outcome.error_type, outcome.error
        for output in outcome.outputs:
            lines, truncated = read_preview(output.local_path, runner.job.preview_lines)
            previews.append(OutputPreview(output.name, output.size, output.records, lines, truncated))
            result.add_output(output, url=None)
        summary.add(result, outcome.insights, outcome.counters)
        summary.notifications = len(outcome.notifications)
        log_file_result(runner.log, result, outcome, 1, 1)
    summary.seconds = time.monotonic() - started
    return summary, previews


def format_previews(previews: list[dict[str, Any]], *, heading: str) -> list[str]:
    """
    The text of the previews (``OutputPreview.as_dict()`` values, e.g. from an XCom): per output
    a heading line -- ``heading`` then name, size and records -- and its first lines, indented.
    """
    lines = []
    for preview in previews:
        records = f", {preview['records']} records" if preview["records"] is not None else ""
        lines.append(f"{heading}{preview['name']} ({preview['size']} bytes{records})")
        lines.extend(f"    {line}" for line in preview["lines"])
        if preview["truncated"]:
            lines.append("    ...")
    return lines
