"""
The flow spec: one YAML or JSON file per flow, following the seed's creation steps.

This pydantic model is the single source of truth: the DAG factory, ``airflow byo validate`` and
the JSON Schema shipped for editors (``flow_spec.schema.json``, generated from it) all use it.

.. code-block:: yaml

    name: customers_to_jsonl
    description: Clean the CRM's customer exports
    source: {type: local, path: /data/crm/exports, include: ["*.csv"]}
    schedule: hourly                       # once, every 15 min, hourly, daily, cron, asset:<uri>,
                                           # or on new files (an AssetWatcher on the source)
    sensor: {deferrable: true}             # optional: wait for new files first
    watch: {poll_interval: 5}              # optional, with schedule: on new files
    processing:
      code: |                              # or function: clean_customers@2, or reference: pkg.mod:func
        def process(file, ctx): ...
      packages: "unidecode==1.3.8"
      runtime_config: {job_config: {timeout_seconds: 60}}
    destination: {type: s3, conn_id: aws_default, path: my-bucket/customers}
    tags: [crm]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from airflow_byo.exceptions import ByoError
from airflow_byo.packages import parse_packages
from airflow_byo.runtime_config import parse_runtime_config
from airflow_byo.triggers.new_files import DEFAULT_POLL_INTERVAL, DEFAULT_RECHECK_INTERVAL

__all__ = [
    "ON_NEW_FILES",
    "DestinationSpec",
    "FlowSpec",
    "ProcessingSpec",
    "SensorSpec",
    "SourceSpec",
    "WatchSpec",
    "schedule_of",
]

#: Ingestion frequency presets and their Airflow schedules.
FREQUENCIES: dict[str, str | None] = {
    "once": "@once",
    "manual": None,
    "every 5 min": "*/5 * * * *",
    "every 15 min": "*/15 * * * *",
    "every 30 min": "*/30 * * * *",
    "hourly": "@hourly",
    "daily": "@daily",
    "weekly": "@weekly",
}
#: The event-driven schedule: the flow's DAG runs when new files land in its source.
ON_NEW_FILES = "on new files"
_ON_NEW_FILES_SPELLINGS = (ON_NEW_FILES, "on_new_files")
_SCHEMES = {"local": "", "s3": "s3://", "sftp": "sftp://"}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Location(_Spec):
    type: Literal["local", "s3", "sftp"] = Field(description="File system: local, s3 or sftp.")
    path: str = Field(
        min_length=1,
        description="Directory: /data/in (local), bucket/prefix (s3), /incoming (sftp, absolute).",
    )
    conn_id: str | None = Field(None, description="Airflow connection with the credentials (s3, sftp).")

    @property
    def url(self) -> str:
        path = self.path
        if "://" in path:
            return path
        if self.type == "sftp" and not path.startswith("/"):
            path = "/" + path
        return _SCHEMES[self.type] + path

    def url_from(self, spec_file: Path | None) -> str:
        """The URL, with a relative local path taken relative to ``spec_file``'s folder."""
        if self.type == "local" and spec_file is not None and not Path(self.path).is_absolute():
            return str((spec_file.parent / self.path).resolve())
        return self.url


class SourceSpec(_Location):
    """Where the files come from, and which of them the flow takes."""

    include: list[str] = Field(default_factory=lambda: ["*"], description="Globs a file must match.")
    exclude: list[str] = Field(default_factory=list, description="Globs that drop a file.")
    recursive: bool = Field(True, description="Also look into sub-directories.")
    min_size: int | None = Field(None, ge=0, description="Only files of at least this many bytes.")
    max_size: int | None = Field(None, ge=0, description="Only files of at most this many bytes.")
    modified_after: str | None = Field(None, description="Only files modified after this ISO time.")
    follow_symlinks: bool = Field(
        False,
        strict=True,
        description="Take symlinks whatever they point to (trusted sources only); off: a local source "
        "takes only regular files inside it, an SFTP source skips links.",
    )


class DestinationSpec(_Location):
    """Where the outputs go."""


class ProcessingSpec(_Spec):
    """The function and its environment: exactly one of code, function or reference."""

    code: str | None = Field(None, description="Inline Python code defining the function.")
    function: str | None = Field(
        None, description="A function of the library: name (latest version) or name@version."
    )
    reference: str | None = Field(None, description="An importable function: package.module:function.")
    function_name: str | None = Field(None, description="Function to call in `code` (default process).")
    packages: str | list[str] | None = Field(None, description="PEP 508 requirements: 'p1==1.0.1,p2==0.0.2'.")
    runtime: str | None = Field(
        None, description="A named runtime of [byo] runtimes (base packages, sandbox and limit defaults)."
    )
    runtime_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Runtime variables & configuration: custom_code, job_config, variables.",
    )

    @model_validator(mode="after")
    def _one_source_of_code(self) -> ProcessingSpec:
        given = [name for name in ("code", "function", "reference") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of code, function or reference (got {', '.join(given) or 'none'})"
            )
        return self

    def resolved(
        self, packages: str | list[str] | None = None, runtime: str | None = None
    ) -> tuple[str, str | None, Any, str | None]:
        """
        ``(processor, function_name, packages, runtime)`` for the flow operator, a library function
        looked up: ``packages``/``runtime`` (e.g. from the command line) over the spec's over the
        library's.
        """
        packages = packages if packages is not None else self.packages
        runtime = runtime or self.runtime
        if self.function:
            from airflow_byo import library

            return library.resolve(self.function, packages, runtime)
        return str(self.code or self.reference), self.function_name, packages, runtime

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str | None) -> str | None:
        from airflow_byo.runtimes_file import get_runtime

        try:
            get_runtime(value)
        except ByoError as exc:  # pydantic reports ValueErrors with the field's path (and line)
            raise ValueError(str(exc)) from None
        return value

    @field_validator("packages")
    @classmethod
    def _valid_packages(cls, value: str | list[str] | None) -> str | list[str] | None:
        try:
            parse_packages(value)
        except ByoError as exc:  # pydantic reports ValueErrors with the field's path
            raise ValueError(str(exc).removeprefix("packages: ")) from None
        return value

    @field_validator("runtime_config")
    @classmethod
    def _valid_runtime_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            parse_runtime_config(value, source="runtime_config")
        except ByoError as exc:
            raise ValueError(str(exc).removeprefix("invalid runtime_config:").strip()) from None
        return value


class SensorSpec(_Spec):
    """Wait for new files before processing (a ByoNewFilesSensor in front of the flow task)."""

    deferrable: bool = Field(True, description="Wait in the triggerer instead of a worker slot.")
    poke_interval: float = Field(60, gt=0, description="Seconds between two checks.")
    timeout: float = Field(3600, gt=0, description="Give up (skip the run) after this many seconds.")


class WatchSpec(_Spec):
    """How ``schedule: on new files`` watches the source (an AssetWatcher run by the triggerer)."""

    poll_interval: float | None = Field(
        None,
        gt=0,
        description=f"Seconds between two listings of the source (default {DEFAULT_POLL_INTERVAL:g}): a "
        "new file waits about half of it before its run is queued. Not used with events.",
    )
    recheck_interval: float | None = Field(
        DEFAULT_RECHECK_INTERVAL,
        gt=0,
        description="Seconds between two ledger checks of every listed file, which start a run for "
        "files still unprocessed (a run that died, failed files); null: never.",
    )

    events: dict[str, Any] | None = Field(
        None,
        description="Take the new-file signals from the bucket's S3 event notifications in an SQS "
        "queue instead of listing every poll_interval (an S3 source only): sqs_queue (the queue's "
        "URL, required), aws_conn_id (default: the source's connection), region_name, "
        "wait_time_seconds (1-20, default 20), max_messages (1-10), visibility_timeout. The listing "
        "still runs at start and every recheck_interval, for messages that were lost.",
    )

    @field_validator("events")
    @classmethod
    def _valid_events(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        from airflow_byo.s3_events import check_events

        if value is None:
            return None
        if info.data.get("poll_interval") is not None:
            raise ValueError(
                "poll_interval is not used with events (the queue's messages replace the polling): "
                "remove poll_interval"
            )
        check_events(value)  # the watcher's own checks: unknown keys, ranges, the queue URL
        return value

    @field_validator("recheck_interval")
    @classmethod
    def _not_below_poll(cls, value: float | None, info: ValidationInfo) -> float | None:
        poll = info.data.get("poll_interval")
        if value is not None and poll is not None and value < poll:
            raise ValueError(f"must be at least poll_interval ({poll:g} s), or null to never recheck")
        return value


FlowEvent = Literal["succeeded", "failed", "quarantined"]
_DEFAULT_EVENTS: list[FlowEvent] = ["failed", "quarantined"]


class NotificationsSpec(_Spec):
    """Where ctx.notify() messages and flow events go."""

    channels: list[dict[str, Any]] = Field(
        min_length=1, description="Channels: {type: webhook|email|slack|file, ..., levels: [...]}."
    )
    events: list[FlowEvent] = Field(
        default_factory=lambda: list(_DEFAULT_EVENTS), description="Flow events sent to the channels."
    )
    data_delay_minutes: float | None = Field(
        None, gt=0, description="Alert when no new file arrived for this many minutes."
    )
    fail_on_error: bool = Field(False, description="Fail the flow when a notification cannot be delivered.")

    @field_validator("channels")
    @classmethod
    def _valid_channels(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from airflow_byo.notifications.channels import parse_channels

        try:
            parse_channels(value, source="channels")
        except ByoError as exc:
            raise ValueError(str(exc)) from None
        return value


class FlowSpec(_Spec):
    """One BYO flow: name, source, processing logic, destination, schedule."""

    name: str = Field(description="The flow's name, used as the DAG id.")
    description: str = Field("", description="What the flow does (shown in the Airflow UI).")
    source: SourceSpec
    processing: ProcessingSpec
    destination: DestinationSpec
    schedule: str = Field(
        "manual",
        description="Ingestion frequency: once, manual, every 5/15/30 min, hourly, daily, weekly, "
        "a cron expression, asset:<uri> to run when that Asset is updated, or 'on new files' to run "
        "when new files land in the source (an AssetWatcher in the triggerer, no sensor).",
    )
    sensor: SensorSpec | None = Field(None, description="Wait for new files first.")
    watch: WatchSpec | None = Field(
        None, description="Knobs of schedule 'on new files': poll_interval, recheck_interval."
    )
    notifications: NotificationsSpec | None = Field(None, description="Notification channels and events.")
    tags: list[str] = Field(default_factory=list, description="Tags shown in the Airflow UI.")
    owner: str = Field("airflow", description="The DAG's owner.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '_', '-' and '.' only (it becomes the DAG id)")
        return value

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        schedule_of(value)
        return value

    @field_validator("sensor")
    @classmethod
    def _no_sensor_on_new_files(cls, value: SensorSpec | None, info: ValidationInfo) -> SensorSpec | None:
        if value is not None and watches_new_files(info.data.get("schedule")):
            raise ValueError(
                "not used with schedule 'on new files', whose watcher already waits for the files in "
                "the triggerer: remove sensor (or use another schedule)"
            )
        return value

    @field_validator("watch")
    @classmethod
    def _watch_needs_on_new_files(cls, value: WatchSpec | None, info: ValidationInfo) -> WatchSpec | None:
        schedule = info.data.get("schedule")
        if value is not None and schedule is not None and not watches_new_files(schedule):
            raise ValueError(
                f"only used with schedule 'on new files' (schedule is {schedule!r}): remove watch, "
                "or set schedule: on new files"
            )
        return value

    @model_validator(mode="after")
    def _events_need_s3(self) -> FlowSpec:
        if self.watch is not None and self.watch.events is not None and self.source.type != "s3":
            raise ValueError(
                f"watch.events reads S3 event notifications, but the source is {self.source.type}: "
                "use an S3 source, or drop events to poll the source"
            )
        return self

    @property
    def on_new_files(self) -> bool:
        """Whether the flow runs when new files land (``schedule: on new files``)."""
        return watches_new_files(self.schedule)


def watches_new_files(schedule: str | None) -> bool:
    """Whether a spec's ``schedule`` is the event-driven ``on new files``."""
    return isinstance(schedule, str) and schedule.strip().lower() in _ON_NEW_FILES_SPELLINGS


def schedule_of(value: str) -> Any:
    """
    The Airflow schedule for a spec's ``schedule``: a preset, a cron expression or an Asset;
    :data:`ON_NEW_FILES` for ``on new files``, whose Asset the factory builds from the source.
    """
    text = value.strip()
    if watches_new_files(text):
        return ON_NEW_FILES
    if text.lower() in FREQUENCIES:
        return FREQUENCIES[text.lower()]
    if text.startswith("asset:"):
        from airflow.sdk import Asset

        return [Asset(text.removeprefix("asset:"))]
    from croniter import croniter

    if croniter.is_valid(text):
        return text
    raise ValueError(
        f"{value!r} is not a schedule: use one of {', '.join(FREQUENCIES)}, {ON_NEW_FILES}, a cron "
        "expression such as '0 6 * * *', or asset:<uri>"
    )


SCHEMA_FILE = "flow_spec.schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of flow specs (shipped as ``flow_spec.schema.json`` for editors)."""
    schema = FlowSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/airflow-byo/airflow-byo/flow_spec.schema.json"
    return schema
