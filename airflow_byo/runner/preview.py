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
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_byo.results import FileTally, file_result
from airflow_byo.runner.output_handoff import OutputStaging
from airflow_byo.runner.preview_formats import (
    HEAD_BYTES,
    Head,
    as_table,
    binary_name,
    read_head,
    render_table,
)
from airflow_byo.runner.progress import log_file_result
from airflow_byo.runner.transfers import FetchedFile, stage_now
from airflow_byo.scratch import scratch
from airflow_byo.storage.location import Location

if TYPE_CHECKING:
    from airflow_byo.results import RunSummary, StagedOutput
    from airflow_byo.runner.flow_runner import FlowRunner
    from airflow_byo.storage.location import SourceFile

__all__ = ["OutputPreview", "format_previews", "locate_test_file", "output_preview", "preview_file"]

_PREVIEW_MAX_BYTES = HEAD_BYTES


@dataclass
class OutputPreview:
    """
    What test mode shows of one output: a table of its first records when it is JSON Lines,
    JSON, CSV or (decoded in the child) Parquet/Arrow/Avro, else its first lines.

    ``lines`` stays the raw first lines of a text output (a note for binary ones), so callers
    that only know lines still show something sensible.
    """

    name: str
    size: int
    records: int | None
    lines: list[str]
    truncated: bool
    #: jsonl, json, csv, tsv, parquet, arrow, avro, text or binary
    format: str = "text"
    #: gzip or bz2 when the output was compressed (the preview shows it decompressed)
    compression: str | None = None
    columns: list[str] = field(default_factory=list)
    #: column types, when the format has a schema (Parquet, Arrow, Avro)
    types: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    #: rows in the whole output, when its format says (Parquet, Arrow file)
    total_rows: int | None = None
    #: how it was decoded, or why it could not be
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_preview(local_path: str, max_lines: int) -> tuple[list[str], bool]:
    """Read at most ``max_lines`` lines (and 64 KB) of a file; binary shows as size + hex head."""
    fd = os.open(local_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = read_head(fd, os.path.basename(local_path), _PREVIEW_MAX_BYTES)
        lines, truncated, _binary = _text_lines(head, os.fstat(fd).st_size, max_lines)
    finally:
        os.close(fd)
    return lines, truncated


def _text_lines(head: Head, size: int, max_lines: int) -> tuple[list[str], bool, bool]:
    """The head's first lines, whether more exist, and whether it is binary (one hex line)."""
    data = head.data
    label = binary_name(data) or ("binary" if b"\x00" in data[:8192] else None)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(data) - 4 or head.complete:  # not a multi-byte character cut at the end
            label = label or "binary"
        text = data[: exc.start].decode("utf-8")
    if label:
        packed = f"{head.compression}-compressed " if head.compression else ""
        return [f"<{packed}{label}, {size} bytes, first bytes: {data[:64].hex(' ')}>"], True, True
    lines = text.splitlines()
    return lines[:max_lines], not head.complete or len(lines) > max_lines, False


def output_preview(output: StagedOutput, rows: int) -> OutputPreview:
    """The preview of one staged output: the child's decoding if it sent one, else the worker's."""
    fd = output.open()  # the very file the worker took and checked (see output_handoff)
    try:
        head = read_head(fd, output.name, _PREVIEW_MAX_BYTES)
    finally:
        os.close(fd)
    preview = OutputPreview(output.name, output.size, output.records, [], False, compression=head.compression)
    decoded = output.decoded
    if decoded is not None and not decoded["error"]:
        preview.format, preview.total_rows = decoded["format"], decoded["total_rows"]
        preview.columns, preview.types = decoded["columns"], decoded["types"]
        preview.rows = decoded["rows"][:rows]
        shown_all = decoded["total_rows"] is not None and len(preview.rows) >= decoded["total_rows"]
        preview.truncated = not shown_all
        preview.note = f"{decoded['format']}, decoded in the flow's environment by {decoded['library']}"
        return preview
    preview.lines, preview.truncated, binary = _text_lines(head, output.size, rows)
    if binary:
        preview.format = "binary"
        preview.note = decoded["error"] if decoded is not None else head.error
        return preview
    table = as_table(head.inner_name, head.data.decode("utf-8", errors="ignore"), head.complete, rows + 1)
    if table is not None:
        preview.format, preview.columns, found = table
        preview.rows = found[:rows]
        preview.truncated = len(found) > rows or not head.complete
    return preview


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
    previews: list[OutputPreview] = []
    tally = FileTally()
    started = time.monotonic()
    with (
        scratch("test") as out_root,
        location.input_staging() as staging,
        runner.children(
            inputs=staging, staging=OutputStaging(out_root), preview_rows=runner.job.preview_lines
        ) as children,
    ):
        owner = (children.identity.uid, children.identity.gid) if children.identity else None
        item = FetchedFile(0, file, stage_now(location, file, staging, owner))
        outcome = runner.process(children, item)
        result = file_result(file.url, file.size, outcome)  # test mode publishes nothing
        previews = [output_preview(output, runner.job.preview_lines) for output in outcome.outputs]
        tally.add(result, outcome.insights, outcome.counters, len(outcome.notifications))
        log_file_result(runner.log, result, outcome, 1, 1)
    summary = runner.summary(
        file.url, None, tally, files_seen=1, test_mode=True, seconds=time.monotonic() - started
    )
    return summary, previews


def format_previews(previews: list[dict[str, Any]], *, heading: str) -> list[str]:
    """
    The text of the previews (``OutputPreview.as_dict()`` values, e.g. from an XCom): per output
    a heading line -- ``heading`` then name, size and records -- then, indented, how it was
    decoded and its first records as a table, or its first lines.
    """
    lines = []
    for preview in previews:
        records = f", {preview['records']} records" if preview["records"] is not None else ""
        total = preview.get("total_rows")
        rows_total = f", {total} rows" if total is not None and preview["records"] is None else ""
        packed = f", {preview['compression']}" if preview.get("compression") else ""
        lines.append(f"{heading}{preview['name']} ({preview['size']} bytes{records}{rows_total}{packed})")
        if preview.get("note"):
            lines.append(f"    [{preview['note']}]")
        if preview.get("columns"):
            table = render_table(preview["columns"], preview.get("rows") or [], preview.get("types"))
            lines.extend(f"    {line}" for line in table)
        else:
            lines.extend(f"    {line}" for line in preview["lines"])
        if preview["truncated"]:
            lines.append("    ...")
    return lines
