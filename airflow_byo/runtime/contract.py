"""
The processor contract: what a user's function receives and what it may return.

A processor is any function that accepts the input file and a context first::

    def process(file: InputFile, ctx: Context, *args, **kwargs):
        ...

``args``/``kwargs`` come from ``custom_code.args``/``custom_code.kwargs`` of the flow's runtime
configuration. What the function returns becomes the file's default output:

* ``bytes`` or ``str`` -- written as is (``str`` as UTF-8);
* ``None`` -- no default output (use ``ctx.output()``/``ctx.write()`` for one or many outputs);
* a ``dict`` -- one record;
* any other iterable (a list, a generator) -- records, streamed to the output one at a time in
  the flow's ``job_config.output_format`` (``jsonl`` by default, or ``json``/``csv``).

This module runs inside the flow's virtualenv, which does not contain Airflow: it must import with
the standard library alone.
"""

from __future__ import annotations

import csv
import json
import os
import posixpath
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

from .protocol import output_path

if TYPE_CHECKING:
    import logging

    from .protocol import OutputReport

__all__ = [
    "Context",
    "InputFile",
    "OutputError",
    "OutputSpec",
    "safe_output_name",
    "write_records",
]

#: Extension used for the default output of each ``output_format``.
FORMAT_EXTENSIONS = {"jsonl": "jsonl", "json": "json", "csv": "csv", "text": "txt", "bytes": "bin"}


class OutputError(ValueError):
    """An output name or value that the contract does not allow."""


def safe_output_name(name: str) -> str:
    """
    Return ``name`` as a normalised relative POSIX path, or raise :class:`OutputError`.

    Output names are relative to the flow's destination: absolute paths, ``..`` segments, empty
    names and control characters are rejected so that a function can never write outside it.
    """
    if not isinstance(name, str) or not name.strip():
        raise OutputError(f"output name must be a non-empty string, got {name!r}")
    if any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in name) or "\\" in name:
        raise OutputError(f"output name {name!r} contains a control character or a backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise OutputError(
            f"output name {name!r} is absolute; use a name relative to the destination, "
            "e.g. 'orders.jsonl' or 'by_day/2024-01-01.jsonl'"
        )
    parts = name.split("/")
    if ".." in parts:
        raise OutputError(
            f"output name {name!r} leaves the destination ('..' is not allowed in output names)"
        )
    normalised = posixpath.normpath(name)
    if normalised in (".", "") or normalised.startswith("../"):
        raise OutputError(f"output name {name!r} does not name a file inside the destination")
    return normalised


class InputFile:
    """
    The input file handed to a processor.

    :ivar path: local path of the staged copy; read it with :meth:`open` or any library.
    :ivar url: the file's original location, e.g. ``s3://bucket/in/a.csv`` or ``/data/in/a.csv``.
    :ivar name: the file name, e.g. ``a.csv``.
    :ivar relative_path: path relative to the flow's source directory, e.g. ``2024/a.csv``.
    :ivar size: size in bytes.
    """

    __slots__ = ("name", "path", "relative_path", "size", "url")

    def __init__(self, *, path: str, url: str, name: str, relative_path: str, size: int) -> None:
        self.path = path
        self.url = url
        self.name = name
        self.relative_path = relative_path
        self.size = size

    @property
    def stem(self) -> str:
        """The file name without its last extension (``a.csv`` -> ``a``)."""
        return posixpath.splitext(self.name)[0]

    @property
    def suffix(self) -> str:
        """The last extension with its dot (``a.csv`` -> ``.csv``)."""
        return posixpath.splitext(self.name)[1]

    def open(self, mode: str = "r", encoding: str | None = "utf-8", **kwargs: Any) -> IO[Any]:
        """Open the staged file for reading (``"r"`` text, ``"rb"`` binary)."""
        if any(ch in mode for ch in "wax+"):
            raise OutputError("input files are read-only; write outputs with ctx.output()")
        if "b" in mode:
            return open(self.path, mode, **kwargs)
        return open(self.path, mode, encoding=encoding, **kwargs)

    def __repr__(self) -> str:
        return f"InputFile(url={self.url!r}, size={self.size})"


class OutputSpec:
    """One output produced for an input file (reported back to the parent)."""

    __slots__ = ("local_path", "name", "records", "size")

    def __init__(self, name: str, local_path: str, size: int = 0, records: int | None = None) -> None:
        self.name = name
        self.local_path = local_path
        self.size = size
        self.records = records

    def as_dict(self) -> OutputReport:
        return {"name": self.name, "size": self.size, "records": self.records}


def _json_default(value: Any) -> Any:
    """Make common non-JSON types (datetime, Decimal, UUID, sets) serialisable in records."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


#: One encoder for every record: ``json.dumps`` with options builds a new encoder per call.
_RECORD_ENCODER = json.JSONEncoder(default=_json_default, ensure_ascii=False)


def write_records(records: Iterable[Any], stream: IO[str], output_format: str) -> int:
    """Stream ``records`` to ``stream`` in ``output_format``; return how many were written."""
    count = 0
    encode = _RECORD_ENCODER.encode
    if output_format == "jsonl":
        for record in records:
            stream.write(encode(record) + "\n")
            count += 1
    elif output_format == "json":
        stream.write("[")
        for record in records:
            stream.write(",\n" if count else "\n")
            stream.write(encode(record))
            count += 1
        stream.write("\n]\n" if count else "]\n")
    elif output_format == "csv":
        writer: csv.DictWriter[str] | None = None
        for record in records:
            if not isinstance(record, Mapping):
                raise OutputError(
                    f"output_format 'csv' needs records that are dicts, got {type(record).__name__}"
                )
            if writer is None:
                writer = csv.DictWriter(stream, fieldnames=list(record), extrasaction="raise")
                writer.writeheader()
            writer.writerow(record)
            count += 1
    else:
        raise OutputError(
            f"records cannot be written with output_format {output_format!r}; "
            "use 'jsonl', 'json' or 'csv', or return bytes/str"
        )
    return count


class Context:
    """
    What a processor can use besides its input file.

    :ivar job_config: the flow's effective ``job_config`` (a dict).
    :ivar variables: the runtime variables (top-level keys of the runtime configuration other
        than ``custom_code`` and ``job_config``).
    :ivar log: a :class:`logging.Logger`; its lines appear in the Airflow task log.
    :ivar input: the :class:`InputFile` being processed.
    """

    def __init__(
        self,
        *,
        job_config: Mapping[str, Any],
        variables: Mapping[str, Any],
        log: logging.Logger,
        input_file: InputFile,
        output_prefix: str,
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        self.job_config = dict(job_config)
        self.variables = dict(variables)
        self.log = log
        self.input = input_file
        self._output_prefix = output_prefix
        self._emit = emit
        self._outputs: dict[str, OutputSpec] = {}
        self._open_handles: list[tuple[OutputSpec, IO[Any]]] = []
        self.insights: dict[str, Any] = {}
        self.counters: dict[str, float] = {}

    # -- outputs ---------------------------------------------------------------------------
    def output(self, name: str, mode: str = "w", encoding: str = "utf-8") -> IO[Any]:
        """
        Open a new output file named ``name`` (relative to the destination) for writing.

        ``mode`` is ``"w"`` (text) or ``"wb"`` (binary). The file becomes visible at the
        destination only after the function returns successfully.
        """
        if mode not in ("w", "wb"):
            raise OutputError(f"ctx.output() mode must be 'w' or 'wb', got {mode!r}")
        spec = self._new_output(name)
        # Returned open to the user (who may or may not close it); _finish_outputs() closes it.
        handle: IO[Any]
        if mode == "wb":
            handle = open(spec.local_path, "wb")  # noqa: SIM115
        else:
            handle = open(spec.local_path, "w", encoding=encoding, newline="")  # noqa: SIM115
        self._open_handles.append((spec, handle))
        return handle

    def write(self, name: str, data: bytes | str | Iterable[Any], output_format: str | None = None) -> None:
        """Write a whole output at once: bytes, text, or records in ``output_format``."""
        if isinstance(data, bytes):
            with self.output(name, "wb") as handle:
                handle.write(data)
        elif isinstance(data, str):
            with self.output(name, "w") as handle:
                handle.write(data)
        else:
            spec = self._new_output(name)
            fmt = output_format or self.job_config.get("output_format") or "jsonl"
            with open(spec.local_path, "w", encoding="utf-8", newline="") as handle:
                spec.records = write_records(_as_records(data), handle, fmt)

    def _new_output(self, name: str) -> OutputSpec:
        safe = safe_output_name(name)
        if safe in self._outputs:
            raise OutputError(f"output {safe!r} was already written for this input file")
        local_path = output_path(self._output_prefix, len(self._outputs))
        spec = OutputSpec(safe, local_path)
        self._outputs[safe] = spec
        return spec

    def _finish_outputs(self) -> list[OutputSpec]:
        for _spec, handle in self._open_handles:
            if not handle.closed:
                handle.close()
        for spec in self._outputs.values():
            spec.size = os.path.getsize(spec.local_path)
        return list(self._outputs.values())

    # -- insights and notifications ----------------------------------------------------------
    def insight(self, key: str, value: Any) -> None:
        """Publish a custom insight (JSON-serialisable value) to the run summary."""
        json.dumps(value, default=_json_default)  # fail here, in the user's frame, if unusable
        self.insights[str(key)] = value

    def count(self, name: str, n: float = 1) -> None:
        """Add ``n`` to counter ``name``; counters are summed over the run."""
        self.counters[str(name)] = self.counters.get(str(name), 0) + n

    def notify(self, message: str, level: str = "info", **fields: Any) -> None:
        """Send a notification to the flow's channels (delivered by the parent, not here)."""
        self._emit(
            {
                "ev": "notify",
                "message": str(message),
                "level": str(level),
                "fields": json.loads(json.dumps(fields, default=_json_default)),
            }
        )


def _as_records(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        return iter([value])
    return iter(value)
