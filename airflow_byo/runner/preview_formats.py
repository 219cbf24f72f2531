"""
Test mode, on the worker: the head of an output as a person reads it.

Compressed outputs (gzip, bz2) are opened transparently, reading at most a bounded number of
decompressed bytes (a decompression bomb costs nothing). JSON Lines, JSON arrays and CSV/TSV
become a table of their first records; other text stays lines. Binary formats that need a
library (Parquet, Arrow, Avro) are decoded in the child, where the flow's packages live
(:mod:`airflow_byo.runtime.decode`); here they only get a name, their size and a hex head.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = ["Head", "as_table", "binary_name", "cell", "read_head", "render_table"]

#: Decompressed bytes read from an output's head (its preview shows what fits).
HEAD_BYTES = 64 * 1024
#: Columns a text table keeps (JSON objects may have many keys).
MAX_COLUMNS = 100
_CELL_CHARS = 200
_TEXT_CELL_CHARS = 32  # the CLI's table: a wide cell is cut so rows stay one line

#: ``(format, columns, rows)``: the first records of an output as text cells.
Table = tuple[str, list[str], list[list[str]]]

_BINARY_NAMES = {b"PAR1": "Parquet", b"ARROW1": "Arrow IPC", b"Obj\x01": "Avro", b"PK\x03\x04": "ZIP"}


@dataclass
class Head:
    """The first bytes of an output, decompressed when it was compressed."""

    data: bytes
    complete: bool  # the whole (decompressed) output is in ``data``
    compression: str | None = None
    error: str = ""  # why a compressed output could not be read
    inner_name: str = ""  # the name without its compression suffix


def read_head(fd: int, name: str, limit: int = HEAD_BYTES) -> Head:
    """
    At most ``limit`` bytes of the open output ``fd`` (read from its start, left open),
    gunzipped/bunzipped when it is compressed.
    """
    with open(fd, "rb", closefd=False) as handle:
        raw = handle.read(limit + 1)
    compression = "gzip" if raw.startswith(b"\x1f\x8b") else "bz2" if raw.startswith(b"BZh") else None
    if compression is None:
        return Head(raw[:limit], len(raw) <= limit, inner_name=name)
    inner = name.removesuffix(".gz" if compression == "gzip" else ".bz2").removesuffix(".gzip")
    opener = gzip.open if compression == "gzip" else bz2.open
    try:
        with open(fd, "rb", closefd=False) as handle:
            handle.seek(0)
            with opener(handle, "rb") as stream:
                data = stream.read(limit + 1)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        if compression == "bz2" and not name.endswith(".bz2"):  # text that starts with "BZh"
            return Head(raw[:limit], len(raw) <= limit, inner_name=name)
        return Head(raw[:limit], False, None, f"cannot decompress it as {compression}: {exc}", name)
    return Head(data[:limit], len(data) <= limit, compression, inner_name=inner)


def binary_name(head: bytes) -> str | None:
    """The name of a binary format its magic bytes show, if it is one we know."""
    return next((label for magic, label in _BINARY_NAMES.items() if head.startswith(magic)), None)


def cell(value: Any, limit: int = _CELL_CHARS) -> str:
    """A JSON value as a table cell: text as is, other values as JSON, cut to ``limit``."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_table(name: str, text: str, complete: bool, rows: int) -> Table | None:
    """
    ``(format, columns, first rows)`` when ``text`` (an output's head, decoded) is JSON Lines,
    a JSON array of objects, or CSV/TSV by its name; ``None`` for any other text.
    """
    lower = name.lower()
    if lower.endswith((".csv", ".tsv")):
        return _csv_table("tsv" if lower.endswith(".tsv") else "csv", text, complete, rows)
    stripped = text.lstrip()
    if lower.endswith((".jsonl", ".ndjson")) or (stripped.startswith("{") and not lower.endswith(".json")):
        return _records_table("jsonl", _json_lines(text, complete, rows))
    if stripped.startswith("["):
        return _records_table("json", _json_array(stripped, rows))
    return None


def _json_lines(text: str, complete: bool, rows: int) -> list[Any] | None:
    lines = text.splitlines()
    if not complete and lines and not text.endswith("\n"):
        lines.pop()  # cut at the head's end
    records: list[Any] = []
    for line in lines:
        if not line.strip():
            continue
        if len(records) == rows:
            break
        try:
            records.append(json.loads(line))
        except ValueError:
            return None
    return records


def _json_array(text: str, rows: int) -> list[Any] | None:
    """The first ``rows`` elements of a JSON array, even when the head ends inside it."""
    decoder = json.JSONDecoder()
    position, records = 1, list[Any]()
    while len(records) < rows:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] == "]":
            break
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError:
            break  # the head ends here (or it is not JSON: then there are no records)
        records.append(value)
    return records


def _records_table(kind: str, records: list[Any] | None) -> Table | None:
    if not records or not all(isinstance(r, dict) for r in records):
        return None
    columns: list[str] = []
    for record in records:
        columns += [str(k) for k in record if str(k) not in columns]
    columns = columns[:MAX_COLUMNS]
    return kind, columns, [[cell(r[c]) if c in r else "" for c in columns] for r in records]


def _csv_table(kind: str, text: str, complete: bool, rows: int) -> Table | None:
    if not complete and "\n" in text:
        text = text[: text.rindex("\n") + 1]  # cut at the head's end
    try:
        reader = csv.reader(io.StringIO(text), delimiter="\t" if kind == "tsv" else ",")
        header = next(reader, None)
        body = [row for _, row in zip(range(rows), reader, strict=False)]
    except csv.Error:
        return None
    if not header:
        return None
    header = header[:MAX_COLUMNS]
    width = len(header)
    return kind, [cell(c) for c in header], [[cell(c) for c in (row + [""] * width)[:width]] for row in body]


def render_table(columns: list[str], rows: list[list[str]], types: list[str] | None = None) -> list[str]:
    """A plain-text table (header, rule, rows), each cell cut so that a row stays readable."""
    head = [f"{c}: {t}" if t else c for c, t in zip(columns, types or [""] * len(columns), strict=False)]
    shown = [[cell(c, _TEXT_CELL_CHARS) for c in head]] + [
        [cell(c, _TEXT_CELL_CHARS) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in shown if i < len(row)) for i in range(len(head))]
    lines = [" | ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in shown]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return lines
