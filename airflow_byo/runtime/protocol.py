"""
The child protocol, typed once for both ends: one JSON object per line.

* worker -> child, on stdin: :class:`InitRequest` once, then a :class:`FileRequest` per file and
  a :class:`StopRequest` at the end (EOF also stops the child).
* child -> worker, on the child's original stdout: :class:`Ready` or :class:`LoadError` after
  init; per file zero or more :class:`Notify`, then exactly one :class:`Done` or :class:`Failed`.

In test mode (``InitRequest.preview_rows`` > 0) a :class:`Done` also carries a
:class:`DecodedPreview` of each output the child could decode with a library of the flow's
environment (Parquet, Arrow IPC, Avro): the worker may not have those libraries. The worker caps
and checks it (``airflow_byo.runner.child_messages``) and decodes text formats itself.

A file's outputs are written by the child at :func:`output_path` ``(out_prefix, n)`` in the order
it reports them, so the worker derives every local path itself and never takes one from a
message. The worker treats everything the child sends as untrusted input and checks it
(``airflow_byo.runner.child_process``). Standard library only: the child imports this module
inside the flow's virtualenv.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, Union

__all__ = [
    "PREVIEW_MAX_CELL_CHARS",
    "PREVIEW_MAX_COLUMNS",
    "PREVIEW_MAX_ROWS",
    "ChildMessage",
    "DecodedPreview",
    "Done",
    "Failed",
    "FileRequest",
    "InitRequest",
    "LoadError",
    "Notify",
    "OutputReport",
    "Ready",
    "StopRequest",
    "output_path",
]

#: Bounds of a :class:`DecodedPreview`: more rows or columns are a protocol violation, longer
#: cells are cut by the worker (the child cuts them first).
PREVIEW_MAX_ROWS = 1000
PREVIEW_MAX_COLUMNS = 100
PREVIEW_MAX_CELL_CHARS = 200


class InitRequest(TypedDict):
    """The processor to load and the configuration it runs with."""

    op: Literal["init"]
    code: str | None
    reference: str | None
    function_name: str
    sys_path: list[str]
    job_config: dict[str, Any]
    variables: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    #: Test mode: decode this many first rows of each binary output (0: a real run, no previews).
    preview_rows: int


class FileRequest(TypedDict):
    """One input file: its staged local path, where it came from, and where outputs go."""

    op: Literal["file"]
    seq: int
    path: str
    url: str
    name: str
    relative_path: str
    size: int
    out_prefix: str


class StopRequest(TypedDict):
    op: Literal["stop"]


class Ready(TypedDict):
    ev: Literal["ready"]
    python: str
    executable: str


class LoadError(TypedDict):
    ev: Literal["load_error"]
    message: str
    hint: str
    lineno: int | None


class Notify(TypedDict):
    """A ``ctx.notify()`` call while file ``seq`` is processed."""

    ev: Literal["notify"]
    seq: int
    message: str
    level: str
    fields: dict[str, Any]


class OutputReport(TypedDict):
    """One output of a file; the n-th report describes the file at ``output_path(prefix, n)``."""

    name: str
    size: int
    records: int | None


class DecodedPreview(TypedDict):
    """
    The head of a binary output, decoded in the child: its schema and first rows, as text.
    ``error`` (then no columns or rows) says why it could not be decoded, e.g. a missing library.
    """

    output: int  # the index of the output in Done.outputs
    format: Literal["parquet", "arrow", "avro"]
    library: str  # e.g. "pyarrow 17.0.0"
    columns: list[str]
    types: list[str]
    rows: list[list[str]]
    total_rows: int | None
    error: str


class Done(TypedDict):
    ev: Literal["done"]
    seq: int
    seconds: float
    outputs: list[OutputReport]
    insights: dict[str, Any]
    counters: dict[str, float]
    previews: list[DecodedPreview]  # test mode only; empty in a real run


class Failed(TypedDict):
    """The function raised (or its outputs could not be written) for file ``seq``."""

    ev: Literal["error"]
    seq: int
    type: str
    message: str
    traceback: str
    seconds: float


# Union, not |: the child runs on the image's Python too, CPython >= 3.9 (issue 25).
ChildMessage = Union[Ready, LoadError, Notify, Done, Failed]  # noqa: UP007


def output_path(out_prefix: str, index: int) -> str:
    """The local file of a file's ``index``-th output: flat names, no directory per input file."""
    return f"{out_prefix}-{index:05d}"
