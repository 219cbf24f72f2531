"""
What the worker accepts from the child: every message checked before it is believed.

The child runs the user's code, so each line it sends may be forged or malformed. A message is
accepted only when it has the shape of :mod:`airflow_byo.runtime.protocol`; a file's outputs only
when each name is a normalised relative path (the files themselves are then taken out of the
child's reach and checked by :mod:`airflow_byo.runner.output_handoff`). Anything else -- broken
JSON, nesting too deep for the parser, numbers too long, invalid UTF-8, wrong types -- raises
:class:`ProtocolViolation`, which fails that file alone ("the processor sent an invalid message:
...") and never leads to a write outside the destination. Notifications and insights are bounded
in size (:data:`MAX_NOTIFY_BYTES`, :data:`MAX_INSIGHT_BYTES`); how many a file and a run may send is
``job_config``'s to say (:mod:`airflow_byo.runner.message_caps`). A test-mode preview decoded in
the child is held to :data:`~airflow_byo.runtime.protocol.PREVIEW_MAX_ROWS` rows and
:data:`~airflow_byo.runtime.protocol.PREVIEW_MAX_COLUMNS` columns of strings; longer cells are cut.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow_byo.runtime.contract import OutputError, safe_output_name
from airflow_byo.runtime.protocol import (
    PREVIEW_MAX_CELL_CHARS,
    PREVIEW_MAX_COLUMNS,
    PREVIEW_MAX_ROWS,
)

if TYPE_CHECKING:
    from airflow_byo.runtime.protocol import DecodedPreview, Done, Failed, Notify, OutputReport

__all__ = [
    "MAX_INSIGHT_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_NOTIFY_BYTES",
    "ProtocolViolation",
    "checked_done",
    "checked_previews",
    "parse_message",
]

#: A longer line from the child is refused (a child could otherwise exhaust the worker's memory).
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: Outputs one input file may have.
MAX_OUTPUTS_PER_FILE = 10_000
#: One notification's fields, as JSON; bigger fields are replaced by a note saying so.
MAX_NOTIFY_BYTES = 64 * 1024
#: One file's insights, as JSON; bigger ones fail the message.
MAX_INSIGHT_BYTES = 256 * 1024
#: Nesting of values inside fields, insights and counters (JSON objects and lists).
MAX_NESTING = 32
_MAX_TEXT = 8000


class ProtocolViolation(ValueError):
    """A message from the child that does not follow the protocol."""


def parse_message(line: bytes, expected: tuple[str, ...]) -> dict[str, Any]:
    """Decode one line into a JSON object whose ``ev`` is one of ``expected``."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: ``[[[[...`` deeper than the parser goes; ValueError also covers an
        # integer of more than 4300 digits (sys.int_info.default_max_str_digits).
        raise ProtocolViolation(f"not a JSON object ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(message, dict):
        raise ProtocolViolation(f"expected a JSON object, got {type(message).__name__}")
    if message.get("ev") not in expected:
        raise ProtocolViolation(
            f"unexpected event {str(message.get('ev'))[:40]!r}, expected one of {expected}"
        )
    return message


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (iteratively: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            if level > MAX_NESTING:
                return level
            stack.extend((child, level + 1) for child in item)
    return deepest


def _bounded(value: Any, name: str, limit: int) -> str | None:
    """Why ``value`` is too deep or too large as JSON, or None."""
    if _depth(value) > MAX_NESTING:
        return f"{name} nest deeper than {MAX_NESTING} levels"
    size = len(json.dumps(value, default=str))
    if size > limit:
        return f"{name} are {size} bytes as JSON, more than {limit}"
    return None


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
    """A notification; fields that are too deep or too big are replaced by a note saying so."""
    fields = _field(message, "fields", dict)
    if (problem := _bounded(fields, "its fields", MAX_NOTIFY_BYTES)) is not None:
        fields = {
            "dropped": f"{problem} (airflow-byo keeps at most {MAX_NOTIFY_BYTES} bytes per notification)"
        }
    return {
        "ev": "notify",
        "seq": _field(message, "seq", int),
        "message": _text(message, "message"),
        "level": _text(message, "level")[:20],
        "fields": fields,
    }


def checked_failure(message: dict[str, Any]) -> Failed:
    return {
        "ev": "error",
        "seq": _field(message, "seq", int),
        "type": _text(message, "type")[:200],
        "message": _text(message, "message"),
        "traceback": _text(message, "traceback"),
        "seconds": _seconds(message),
    }


def checked_done(message: dict[str, Any]) -> tuple[Done, dict[int, DecodedPreview]]:
    """
    The ``done`` message: its output reports (names checked, the n-th describing the file at
    ``output_path(out_prefix, n)``) and, in test mode, the child's decoded previews by output.
    """
    reports = _field(message, "outputs", list)
    if len(reports) > MAX_OUTPUTS_PER_FILE:
        raise ProtocolViolation(f"{len(reports)} outputs for one file; at most {MAX_OUTPUTS_PER_FILE}")
    counters = _field(message, "counters", dict)
    for name, value in counters.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ProtocolViolation(f"counter {str(name)[:80]!r} is not a number")
    insights = _field(message, "insights", dict)
    if (problem := _bounded(insights, "the insights", MAX_INSIGHT_BYTES)) is not None:
        raise ProtocolViolation(f"{problem}: keep insights small (ctx.insight is for a few values per file)")
    names: set[str] = set()
    outputs: list[OutputReport] = []
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
        size = _field(report, "size", int)
        if size < 0:
            raise ProtocolViolation(f"output {name!r}: size must be a count")
        outputs.append({"name": name, "size": size, "records": records})
    previews = checked_previews(message.get("previews", []), [o["name"] for o in outputs])
    done: Done = {
        "ev": "done",
        "seq": _field(message, "seq", int),
        "seconds": _seconds(message),
        "outputs": outputs,
        "insights": {str(k): v for k, v in insights.items()},
        "counters": {str(k): v for k, v in counters.items()},
        "previews": previews,
    }
    return done, {preview["output"]: preview for preview in previews}


def _seconds(message: dict[str, Any]) -> float:
    value = float(_field(message, "seconds", (int, float)))
    return value if 0.0 <= value < 1e9 else 0.0  # NaN, inf and negatives mean nothing


_PREVIEW_FORMATS = ("parquet", "arrow", "avro")


def checked_previews(previews: Any, outputs: list[str]) -> list[DecodedPreview]:
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
        where = f"preview of output {outputs[index][:200]!r}"
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
