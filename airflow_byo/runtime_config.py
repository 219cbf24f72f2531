"""
Runtime variables & configuration: the seed's JSON object, validated in one place.

::

    {
      "custom_code": {"args": [...], "kwargs": {...}},   # passed to the processor
      "job_config": {"timeout_seconds": 60, ...},         # platform overrides (JobConfig)
      "country": "NL"                                      # any other key: a runtime variable
    }
"""

from __future__ import annotations

import difflib
import json
import string
import types
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.runtime.contract import OutputError, safe_output_name

__all__ = ["CustomCode", "JobConfig", "RuntimeConfig", "parse_runtime_config"]

OUTPUT_NAME_FIELDS = frozenset({"name", "stem", "suffix", "ext", "rel_dir"})


class CustomCode(BaseModel):
    """Arguments passed to the processor after ``file`` and ``ctx``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    args: list[Any] = Field(default_factory=list, description="Positional arguments for the processor.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the processor.")


class JobConfig(BaseModel):
    """
    Platform settings a flow may override. Unknown keys are errors, so typos never pass silently,
    and types are strict: a number key takes a JSON number only (``true`` or ``"60"`` is an error,
    not 1 or 60), an integer key a whole number (not ``10.0``), a boolean key ``true``/``false``
    only (not ``1`` or ``"yes"``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_seconds: float = Field(
        300.0, gt=0, description="Per-file limit; a function still running after it is killed."
    )
    batch_size: int = Field(
        1000,
        ge=1,
        description="Files handled by one child process before it is replaced by a fresh one.",
    )
    error_policy: Literal["fail_fast", "continue", "quarantine"] = Field(
        "continue",
        description="fail_fast: stop at the first failed file (the rest stay unprocessed). "
        "continue: process every file, then fail the task naming the failed files (they are "
        "retried by the next run). quarantine: copy failed files and their errors to the "
        "quarantine location, mark them in the ledger, and succeed.",
    )
    retries: int = Field(0, ge=0, le=10, description="More attempts for a failed file within the run.")
    on_change: Literal["reprocess", "ignore"] = Field(
        "reprocess",
        description="A processed path whose content changed (new size/mtime or ETag): process it "
        "again, or ignore it.",
    )
    lease_seconds: float = Field(
        600.0,
        ge=1,
        description="How long a claim on a file survives without renewal; a file claimed by a "
        "worker that died is picked up again after it.",
    )
    on_held: Literal["succeed", "wait", "fail"] = Field(
        "succeed",
        description="Files held by live claims of other runs that may be alive (a provably dead "
        "run's claims are taken over at once): 'succeed' processes the rest and reports them (log "
        "and summary: how many, held by which run, until when); 'wait' first waits until their "
        "claims are released or expire (at most until the last expiry it saw), then processes them; "
        "'fail' processes the rest, then fails the task naming the holders and the expiry.",
    )
    output_format: Literal["jsonl", "json", "csv", "text", "bytes"] = Field(
        "jsonl", description="How returned records are written; also picks the default extension."
    )
    output_name: str = Field(
        "{stem}.{ext}",
        description="Name of the default output, relative to the destination. Fields: {name}, "
        "{stem}, {suffix}, {ext}, {rel_dir}.",
    )
    max_memory_mb: int | None = Field(
        2048,
        ge=64,
        description="Address-space cap of the child process (RLIMIT_AS); null for no cap.",
    )
    cpu_seconds: float | None = Field(
        600.0,
        gt=0,
        description="CPU time the function may use on one file (all its threads and the processes it "
        "starts): the function gets an error when it is used up, and the worker kills the child if it "
        "goes on. Null for no cap.",
    )
    max_processes: int | None = Field(
        256,
        ge=8,
        description="Processes and threads the sandboxed child may have at once (RLIMIT_NPROC of the "
        "child's own uid: a root worker gives every child a uid of its own). Null for no cap.",
    )
    max_output_mb: int | None = Field(
        10240,
        ge=1,
        description="Largest file the function may write, each output included (RLIMIT_FSIZE: a "
        "bigger write fails with 'File too large'). Null for no cap.",
    )
    network: bool = Field(
        False,
        description="Let the sandboxed function use the network (to call an API): outbound "
        "connections through a user-mode network stack (pasta), which cannot reach the worker's "
        "loopback services or abstract unix sockets. Off: it has only a loopback of its own, no route "
        "to any host.",
    )
    host_loopback: bool = Field(
        False,
        description="With network: share the worker's own network instead, its loopback services "
        "(databases, the Airflow API, metadata) and abstract unix sockets included: for a function "
        "that must call a service on the worker host itself. Trusted code only.",
    )
    max_notifications_per_file: int = Field(
        100,
        ge=0,
        description="ctx.notify() calls kept per file; later ones are dropped (counted in the log). "
        "Each notification's fields are cut at 64 KiB.",
    )
    max_notifications_per_run: int = Field(
        1000, ge=0, description="ctx.notify() calls delivered per run; later ones are dropped (logged)."
    )
    max_insight_keys: int = Field(
        1000,
        ge=1,
        description="Distinct ctx.insight()/ctx.count() names kept in a run's summary; values of "
        "new names beyond it are dropped (counted in the summary). One file's insights are at most "
        "256 KiB as JSON.",
    )
    transfer_concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="Remote inputs downloaded ahead and outputs uploaded behind while files are "
        "processed; also bounds the local disk used for staging (that many files).",
    )
    progress_interval_seconds: float = Field(
        30.0, gt=0, description="How often a run logs its progress (files, bytes, rate, ETA)."
    )
    preview_lines: int = Field(20, ge=1, le=1000, description="Lines/records shown per output in test mode.")
    workers: int | Literal["auto"] = Field(
        "auto",
        description="Children one task runs side by side, each streaming files as one child does "
        "(memory caps are per child: the total is workers times max_memory_mb). 'auto': the CPUs "
        "available to the task; always capped by the number of files and by [byo] max_workers. "
        "Test mode runs one child; fail_fast with 'auto' runs one child (it stops at the first failure).",
    )

    @property
    def stops_at_first_failure(self) -> bool:
        """``error_policy: fail_fast``: the run stops at the first failed file (one child)."""
        return self.error_policy == "fail_fast"

    @property
    def quarantines_failures(self) -> bool:
        """``error_policy: quarantine``: failed inputs go to quarantine and the run succeeds."""
        return self.error_policy == "quarantine"

    @field_validator("*", mode="before")
    @classmethod
    def _strict_types(cls, value: Any, info: ValidationInfo) -> Any:
        # JSON/YAML ``true`` is no number and ``1`` no boolean: pydantic's lax mode would take
        # them (and "60" as 60), so a typo'd config would run with values nobody meant.
        assert info.field_name is not None
        return strict_scalar(value, cls.model_fields[info.field_name].annotation)

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        # A union of a number and a word: pydantic's lax mode would take "2" or true as a count.
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        given = (
            "a number below 1"
            if isinstance(value, int) and not isinstance(value, bool)
            else _json_kind(value)
        )
        raise PydanticCustomError(
            "workers", f'must be "auto" or a JSON whole number of at least 1 such as 4, not {given}'
        )

    @model_validator(mode="after")
    def _loopback_needs_network(self) -> JobConfig:
        if self.host_loopback and not self.network:
            raise ValueError("host_loopback: true needs network: true (it widens the network the flow has)")
        return self

    @field_validator("output_name")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"{exc}; use placeholders like {{stem}}.{{ext}}") from None
        unknown = fields - OUTPUT_NAME_FIELDS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(OUTPUT_NAME_FIELDS)}"
            )
        sample = value.format(name="a.csv", stem="a", suffix=".csv", ext="jsonl", rel_dir="sub")
        try:
            safe_output_name(sample)
        except OutputError as exc:
            raise ValueError(str(exc)) from None
        return value


def _scalar_type(annotation: Any) -> type | None:
    """``int``, ``float`` or ``bool`` for a field of that type (optional or not), else None."""
    options = get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    found = [t for t in options if t in (bool, int, float)]
    return found[0] if len(found) == 1 else None


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def strict_scalar(value: Any, annotation: Any) -> Any:
    """
    ``value`` if it has the JSON type of a number or boolean field; an error naming what was
    given otherwise. Values this check lets through (``"soon"``, ``1.5`` for an integer) get
    pydantic's own message.
    """
    kind = _scalar_type(annotation)
    if kind is None or value is None:
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise PydanticCustomError("strict_bool", f"must be true or false, not {_json_kind(value)}")
        return value
    wanted = "a JSON whole number such as 100" if kind is int else "a JSON number such as 60 or 2.5"
    if isinstance(value, bool) or (isinstance(value, str) and _looks_numeric(value)):
        raise PydanticCustomError("strict_number", f"must be {wanted}, not {_json_kind(value)}")
    if kind is int and isinstance(value, float) and value.is_integer():
        raise PydanticCustomError("strict_number", f"must be {wanted}, not {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    """How a value was written in JSON/YAML: ``"60"`` is a string, ``true`` a boolean."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, float):
        return "a number with a decimal point"
    if isinstance(value, int):
        return "a number"
    return f"a {type(value).__name__}"


class RuntimeConfig(BaseModel):
    """The whole runtime configuration; ``variables`` holds every key that is not special."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    custom_code: CustomCode = Field(default_factory=CustomCode)
    job_config: JobConfig = Field(default_factory=JobConfig)
    variables: dict[str, Any] = Field(default_factory=dict)


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            field = str(error["loc"][-1])
            model = JobConfig if error["loc"][0] == "job_config" else CustomCode
            close = difflib.get_close_matches(field, list(model.model_fields), n=1)
            allowed = ", ".join(model.model_fields)
            message = (
                f"unknown key{f' (did you mean {close[0]!r}?)' if close else ''}; allowed keys: {allowed}"
            )
        elif "input" in error and error["type"] not in ("missing",):
            message = f"{message} (got {error['input']!r})"
        lines.append(f"  {loc}: {message}")
    return f"invalid {source}:\n" + "\n".join(lines)


def parse_runtime_config(
    value: str | dict[str, Any] | RuntimeConfig | None, source: str = "runtime_config"
) -> RuntimeConfig:
    """
    Validate runtime variables & configuration given as a dict or a JSON string.

    :raises ByoConfigError: naming the key path (``job_config.timeout_seconds: ...``) or the
        JSON line and column.
    """
    if isinstance(value, RuntimeConfig):
        return value
    if value is None or value == "":
        return RuntimeConfig()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ByoConfigError(
                f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}. "
                'It must be a JSON object such as {"job_config": {"timeout_seconds": 60}}'
            ) from None
    if not isinstance(value, dict):
        raise ByoConfigError(
            f"{source} must be a JSON object (a dict), got {type(value).__name__}: "
            'e.g. {"custom_code": {"args": [1]}, "job_config": {"batch_size": 100}}'
        )
    special = {key: value[key] for key in ("custom_code", "job_config") if key in value}
    variables = {key: val for key, val in value.items() if key not in special}
    try:
        return RuntimeConfig(**special, variables=variables)
    except ValidationError as exc:
        raise ByoConfigError(_format_validation_error(exc, source)) from None
