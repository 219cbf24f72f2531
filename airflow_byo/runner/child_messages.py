"""
What the worker accepts from the child: every message checked before it is believed.

The child runs the user's code, so each line it sends may be forged or malformed. A message is
accepted only when it has the shape of :mod:`airflow_byo.runtime.protocol`; a file's outputs only
when each name is a normalised relative path and each file is a regular file (no symlink) at the
place the worker chose for it (:func:`~airflow_byo.runtime.protocol.output_path`). Anything else
raises :class:`ProtocolViolation`, which fails that file ("the processor sent an invalid
message: ...") and never leads to a write outside the destination. A test-mode preview decoded
in the child is held to :data:`~airflow_byo.runtime.protocol.PREVIEW_MAX_ROWS` rows and
:data:`~airflow_byo.runtime.protocol.PREVIEW_MAX_COLUMNS` columns of strings; longer cells are cut.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from airflow_byo.runtime.contract import OutputError, safe_output_name
from airflow_byo.runtime.protocol import (
    PREVIEW_MAX_CELL_CHARS,
    PREVIEW_MAX_COLUMNS,
    PREVIEW_MAX_ROWS,
    output_path,
)

if TYPE_CHECKING:
    from airflow_byo.runtime.protocol import DecodedPreview, Done, Failed, Notify

__all__ = [
    "MAX_MESSAGE_BYTES",
    "FileOutcome",
    "ProtocolViolation",
    "StagedOutput",
    "checked_previews",
    "parse_message",
]

#: A longer line from the child is refused (a child could otherwise exhaust the worker's memory).
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: Outputs one input file may have.
MAX_OUTPUTS_PER_FILE = 10_000
_MAX_TEXT = 8000

OutcomeStatus = Literal["done", "error", "timeout", "crashed"]


class ProtocolViolation(ValueError):
    """A message from the child that does not follow the protocol."""


@dataclass(frozen=True)
class StagedOutput:
    """One output of a file, staged locally by the child and checked by the worker."""

    name: str
    local_path: str
    size: int
    records: int | None
    #: Test mode: the schema and first rows the child decoded (binary formats only).
    decoded: DecodedPreview | None = None


@dataclass
class FileOutcome:
    """What happened to one file inside the child."""

    status: OutcomeStatus
    seconds: float = 0.0
    outputs: list[StagedOutput] = field(default_factory=list)
    insights: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    notifications: list[Notify] = field(default_factory=list)
    error_type: str = ""
    error: str = ""
    traceback: str = ""
    attempts: int = 1
    quarantined: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "done"


def parse_message(line: bytes, expected: tuple[str, ...]) -> dict[str, Any]:
    """Decode one line into a JSON object whose ``ev`` is one of ``expected``."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolViolation(f"not a JSON object ({exc})") from None
    if not isinstance(message, dict):
        raise ProtocolViolation(f"expected a JSON object, got {type(message).__name__}")
    if message.get("ev") not in expected:
        raise ProtocolViolation(
            f"unexpected event {str(message.get('ev'))[:40]!r}, expected one of {expected}"
        )
    return message


def _field(message: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = message.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        wanted = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ProtocolViolation(f"field {name!r} must be {wanted}, got {type(value).__name__}")
    return value


def _text(message: dict[str, Any], name: str) -> str:
    return str(_field(message, name, str))[:_MAX_TEXT]


def checked_seq(message: dict[str, Any], expected: int) -> None:
    if _field(message, "seq", int) != expected:
        raise ProtocolViolation(
            f"answer for file #{message['seq']} while file #{expected} was being processed"
        )


def checked_notify(message: dict[str, Any]) -> Notify:
    return {
        "ev": "notify",
        "seq": _field(message, "seq", int),
        "message": _text(message, "message"),
        "level": _text(message, "level"),
        "fields": _field(message, "fields", dict),
    }


def checked_failure(message: dict[str, Any]) -> Failed:
    return {
        "ev": "error",
        "seq": _field(message, "seq", int),
        "type": _text(message, "type")[:200],
        "message": _text(message, "message"),
        "traceback": _text(message, "traceback"),
        "seconds": max(0.0, float(_field(message, "seconds", (int, float)))),
    }


def checked_done(message: dict[str, Any], out_prefix: str) -> tuple[Done, list[StagedOutput]]:
    """The ``done`` message and its outputs, each found where the worker asked for it."""
    reports = _field(message, "outputs", list)
    if len(reports) > MAX_OUTPUTS_PER_FILE:
        raise ProtocolViolation(f"{len(reports)} outputs for one file; at most {MAX_OUTPUTS_PER_FILE}")
    counters = _field(message, "counters", dict)
    for name, value in counters.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ProtocolViolation(f"counter {str(name)[:80]!r} is not a number")
    names: set[str] = set()
    outputs = []
    for index, report in enumerate(reports):
        if not isinstance(report, dict):
            raise ProtocolViolation(f"output #{index} is not an object")
        name = _field(report, "name", str)
        try:
            safe = safe_output_name(name)
        except OutputError as exc:
            raise ProtocolViolation(f"output #{index}: {exc}") from None
        if safe != name or name in names:
            raise ProtocolViolation(f"output name {name[:200]!r} is not normalised or not unique")
        names.add(name)
        records = report.get("records")
        if records is not None and (not isinstance(records, int) or isinstance(records, bool) or records < 0):
            raise ProtocolViolation(f"output {name!r}: records must be a count or null")
        local_path = output_path(out_prefix, index)
        try:
            info = os.lstat(local_path)
        except OSError:
            raise ProtocolViolation(f"output {name!r} was reported but not written") from None
        if not stat.S_ISREG(info.st_mode):
            raise ProtocolViolation(f"output {name!r} is not a regular file (a symlink or other file type)")
        if _field(report, "size", int) != info.st_size:
            raise ProtocolViolation(f"output {name!r}: reported {report['size']} bytes, wrote {info.st_size}")
        outputs.append(StagedOutput(name, local_path, info.st_size, records))
    for preview in checked_previews(message.get("previews", []), outputs):
        staged = outputs[preview["output"]]
        outputs[preview["output"]] = dataclasses.replace(staged, decoded=preview)
    done: Done = {
        "ev": "done",
        "seq": _field(message, "seq", int),
        "seconds": max(0.0, float(_field(message, "seconds", (int, float)))),
        "outputs": [{"name": o.name, "size": o.size, "records": o.records} for o in outputs],
        "insights": {str(k): v for k, v in _field(message, "insights", dict).items()},
        "counters": {str(k): v for k, v in counters.items()},
        "previews": [o.decoded for o in outputs if o.decoded is not None],
    }
    return done, outputs


_PREVIEW_FORMATS = ("parquet", "arrow", "avro")


def checked_previews(previews: Any, outputs: list[StagedOutput]) -> list[DecodedPreview]:
    """The child's decoded previews: one at most per output, bounded, every cell a string."""
    if not isinstance(previews, list) or len(previews) > len(outputs):
        raise ProtocolViolation(
            f"field 'previews' must be a list of at most one preview per output ({len(outputs)})"
        )
    seen: set[int] = set()
    checked: list[DecodedPreview] = []
    for preview in previews:
        if not isinstance(preview, dict):
            raise ProtocolViolation("a preview is not an object")
        index = _field(preview, "output", int)
        if not 0 <= index < len(outputs) or index in seen:
            raise ProtocolViolation(f"preview of output #{index}: no such output, or a second preview")
        seen.add(index)
        where = f"preview of output {outputs[index].name[:200]!r}"
        kind = preview.get("format")
        if kind not in _PREVIEW_FORMATS:
            raise ProtocolViolation(f"{where}: format {str(kind)[:40]!r} is not one of {_PREVIEW_FORMATS}")
        columns = _strings(preview, "columns", where)
        types = _strings(preview, "types", where)
        rows = _field(preview, "rows", list)
        if len(rows) > PREVIEW_MAX_ROWS:
            raise ProtocolViolation(f"{where}: {len(rows)} rows; at most {PREVIEW_MAX_ROWS}")
        if len(types) != len(columns):
            raise ProtocolViolation(f"{where}: {len(types)} types for {len(columns)} columns")
        cells = [_strings({"row": row}, "row", where) for row in rows]
        if any(len(row) != len(columns) for row in cells):
            raise ProtocolViolation(f"{where}: a row does not have one cell per column ({len(columns)})")
        total = preview.get("total_rows")
        if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
            raise ProtocolViolation(f"{where}: total_rows must be a count or null")
        checked.append(
            {
                "output": index,
                "format": kind,
                "library": _text(preview, "library")[:100],
                "columns": columns,
                "types": types,
                "rows": cells,
                "total_rows": total,
                "error": _text(preview, "error")[:1000],
            }
        )
    return checked


def _strings(message: dict[str, Any], name: str, where: str) -> list[str]:
    """A list of at most PREVIEW_MAX_COLUMNS strings, each cut to PREVIEW_MAX_CELL_CHARS."""
    values = message.get(name)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ProtocolViolation(f"{where}: {name} must be a list of strings")
    if len(values) > PREVIEW_MAX_COLUMNS:
        raise ProtocolViolation(f"{where}: {len(values)} {name}; at most {PREVIEW_MAX_COLUMNS}")
    return [v if len(v) <= PREVIEW_MAX_CELL_CHARS else v[: PREVIEW_MAX_CELL_CHARS - 1] + "…" for v in values]
