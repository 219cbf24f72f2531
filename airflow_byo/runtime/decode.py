"""
Test mode, inside the child: the schema and first rows of binary outputs (Parquet, Arrow IPC,
Avro), decoded with whatever library the flow's environment has (pyarrow, fastavro).

The worker may not have those libraries, and must not load the user's files with them anyway, so
this runs here, after the function returned, only when the worker asked for previews. Every cell
is sent as text, cut to :data:`~.protocol.PREVIEW_MAX_CELL_CHARS`. Standard library at import time:
the libraries are imported only when an output needs them.
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any, Literal, Optional

from .protocol import PREVIEW_MAX_CELL_CHARS, PREVIEW_MAX_COLUMNS, PREVIEW_MAX_ROWS

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .contract import OutputSpec
    from .protocol import DecodedPreview

__all__ = ["binary_format", "decoded_previews"]

Format = Literal["parquet", "arrow", "avro"]

_HINTS = {
    "parquet": "pyarrow",
    "arrow": "pyarrow",
    "avro": "fastavro",
}


def binary_format(head: bytes, name: str) -> Format | None:
    """The format a file's first bytes (and, for an Arrow stream, its name) say it has."""
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1"):
        return "arrow"
    if head.startswith(b"\xff\xff\xff\xff") and name.endswith((".arrow", ".arrows", ".ipc", ".feather")):
        return "arrow"  # the IPC stream format: a continuation marker, then the schema
    if head.startswith(b"Obj\x01"):
        return "avro"
    return None


def decoded_previews(outputs: list[OutputSpec], rows: int) -> list[DecodedPreview]:
    """A preview of each binary output in a known format; text outputs are the worker's to read."""
    rows = max(0, min(rows, PREVIEW_MAX_ROWS))
    previews: list[DecodedPreview] = []
    for index, spec in enumerate(outputs):
        try:
            with open(spec.local_path, "rb") as handle:
                head = handle.read(8)
        except OSError:
            continue
        kind = binary_format(head, spec.name)
        if kind is not None:
            previews.append(_decode(index, kind, spec.local_path, rows))
    return previews


def _decode(index: int, kind: Format, path: str, rows: int) -> DecodedPreview:
    preview: DecodedPreview = {
        "output": index,
        "format": kind,
        "library": "",
        "columns": [],
        "types": [],
        "rows": [],
        "total_rows": None,
        "error": "",
    }
    try:
        library, columns, types, records, total = _READERS[kind](path, rows)
    except ImportError:
        preview["error"] = (
            f"{_HINTS[kind]} is not installed in the flow's environment: add it to the flow's "
            f"packages to preview {kind} outputs"
        )
        return preview
    except Exception as exc:  # noqa: BLE001 - a preview never fails the test; it says why
        preview["error"] = f"could not decode it: {type(exc).__name__}: {_cut(str(exc))}"
        return preview
    preview["library"] = library
    preview["columns"] = [_cut(c) for c in columns[:PREVIEW_MAX_COLUMNS]]
    preview["types"] = [_cut(t) for t in types[:PREVIEW_MAX_COLUMNS]]
    preview["rows"] = [[_cell(value) for value in record[:PREVIEW_MAX_COLUMNS]] for record in records[:rows]]
    preview["total_rows"] = total
    return preview


# Optional, not | None: the child runs on the image's Python too, CPython >= 3.9 (issue 25).
Decoded = tuple[str, list[str], list[str], list[list[Any]], Optional[int]]  # noqa: UP045


def _parquet(path: str, rows: int) -> Decoded:
    import pyarrow
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        schema = parquet.schema_arrow
        names = schema.names[:PREVIEW_MAX_COLUMNS]
        batch = next(parquet.iter_batches(batch_size=max(rows, 1), columns=names), None)
        records = _arrow_rows(batch, names, rows)
        types = [str(schema.field(i).type) for i in range(len(names))]
        return f"pyarrow {pyarrow.__version__}", names, types, records, parquet.metadata.num_rows


def _arrow(path: str, rows: int) -> Decoded:
    import pyarrow
    import pyarrow.ipc

    with pyarrow.memory_map(path) as source:
        if source.read(6) == b"ARROW1":
            source.seek(0)
            file_reader = pyarrow.ipc.open_file(source)
            count = file_reader.num_record_batches
            batches: Iterable[Any] = (file_reader.get_batch(i) for i in range(count))
            schema = file_reader.schema
            total: int | None = sum(file_reader.get_batch(i).num_rows for i in range(count))
        else:
            source.seek(0)
            stream_reader = pyarrow.ipc.open_stream(source)
            batches, schema, total = stream_reader, stream_reader.schema, None
        names = schema.names[:PREVIEW_MAX_COLUMNS]
        records: list[list[Any]] = []
        for batch in batches:
            records += _arrow_rows(batch, names, rows - len(records))
            if len(records) >= rows:
                break
        types = [str(schema.field(i).type) for i in range(len(names))]
        return f"pyarrow {pyarrow.__version__}", names, types, records, total


def _arrow_rows(batch: Any, names: list[str], rows: int) -> list[list[Any]]:
    if batch is None or rows <= 0:
        return []
    head = batch.slice(0, rows)
    columns = [head.column(i).to_pylist() for i in range(len(names))]
    return [list(row) for row in zip(*columns)]  # noqa: B905 -- no strict= on Python 3.9 (equal lengths)


def _avro(path: str, rows: int) -> Decoded:
    import fastavro

    with open(path, "rb") as handle:
        reader = fastavro.reader(handle)
        schema = reader.writer_schema or {}
        fields = schema.get("fields") or [] if isinstance(schema, dict) else []
        names = [str(f.get("name")) for f in fields][:PREVIEW_MAX_COLUMNS]
        types = [_type_name(f.get("type")) for f in fields][:PREVIEW_MAX_COLUMNS]
        records = [
            [record.get(name) for name in names] if isinstance(record, dict) else [record]
            for record in itertools.islice(reader, rows)
        ]
        if not names:  # a schema that is not a record: one column of values
            names, types = ["value"], [_type_name(schema)]
        return f"fastavro {fastavro.__version__}", names, types, records, None


def _type_name(avro_type: Any) -> str:
    return avro_type if isinstance(avro_type, str) else json.dumps(avro_type, default=str)


_READERS = {"parquet": _parquet, "arrow": _arrow, "avro": _avro}


def _cut(text: str) -> str:
    return text if len(text) <= PREVIEW_MAX_CELL_CHARS else text[: PREVIEW_MAX_CELL_CHARS - 1] + "…"


def _cell(value: Any) -> str:
    """A value as a person reads it: text as is, ``null``, other values as JSON."""
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, bytes):
        return _cut(f"<{len(value)} bytes: {value[:32].hex(' ')}>")
    return _cut(json.dumps(value, default=str, ensure_ascii=False))
