"""
Event-driven flows: an Asset whose ``AssetWatcher`` fires when new files land in a flow's source.

Put it in a DAG's ``schedule`` and the DAG runs when files arrive, with no sensor holding a worker
slot or a triggerer slot per run (docs/event-driven.md)::

    SOURCE = {"source": "/data/landing/orders", "include": ["*.csv"]}

    with DAG("orders", schedule=[new_files_asset(flow_id="orders.flow", **SOURCE)], ...):
        ByoFlowOperator(task_id="flow", destination="/data/clean/orders", processor=..., **SOURCE)

The watcher and the flow must agree on the source, the file selection and the flow id (the flow
operator's default is ``<dag_id>.<task_id>``): sharing one dict of arguments, as above, does it.
The watcher lists the source every ``poll_interval`` seconds
(:class:`~airflow_byo.triggers.new_files.ByoNewFilesEventTrigger`); for an S3 source whose bucket
sends its event notifications to an SQS queue, ``events={"sqs_queue": <url>}`` makes it take the
files from the queue instead, about a second after they land
(:class:`~airflow_byo.triggers.s3_events.ByoS3EventsTrigger`). ``events`` is an argument of the
watcher alone, so the flow and the watcher still share one dict of source arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.s3_events import check_events, split_s3_url
from airflow_byo.triggers.new_files import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_RECHECK_INTERVAL,
    ByoNewFilesEventTrigger,
    check_intervals,
)
from airflow_byo.triggers.s3_events import ByoS3EventsTrigger, check_recheck_interval

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from airflow.sdk import Asset

__all__ = ["DEFAULT_POLL_INTERVAL", "DEFAULT_RECHECK_INTERVAL", "new_files_asset"]

#: The arguments that may hold text a user could mean as a Jinja template.
_TEXT_ARGUMENTS = (
    "source",
    "flow_id",
    "source_conn_id",
    "include",
    "exclude",
    "modified_after",
    "ledger_conn_id",
)


# The source and selection keywords repeat SourceFilesOperator's on purpose: explicit keyword
# arguments (Airflow's style), so flows and watchers share one dict of them (module docstring).
def new_files_asset(
    source: str,
    *,
    flow_id: str,
    source_conn_id: str | None = None,
    include: Sequence[str] | str = ("*",),
    exclude: Sequence[str] | str = (),
    recursive: bool = True,
    modified_after: datetime | str | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    follow_symlinks: bool = False,
    ledger_conn_id: str | None = None,
    on_change: str = "reprocess",
    poll_interval: float | None = None,
    recheck_interval: float | None = DEFAULT_RECHECK_INTERVAL,
    events: dict[str, Any] | None = None,
    name: str | None = None,
) -> Asset:
    """
    An Asset updated whenever ``source`` holds files flow ``flow_id`` has not processed yet.

    Its watcher, a :class:`~airflow_byo.triggers.new_files.ByoNewFilesEventTrigger` (with
    ``events``: a :class:`~airflow_byo.triggers.s3_events.ByoS3EventsTrigger`), runs in the
    triggerer while a DAG scheduled on the Asset is unpaused. Its events carry ``{"flow_id",
    "source", "count", "listed", "sample", "recheck"}`` (the Asset event's ``extra["payload"]``).
    The run they start lists the source itself and processes every unprocessed file, so files
    that land while a run is busy are taken by the next run.

    The source and selection arguments are those of
    :class:`~airflow_byo.operators.byo_flow.ByoFlowOperator` (pass the flow's own values), but not
    templated: the triggerer has no task context to render them with.

    :param flow_id: the flow's name in the ledger: the flow operator's ``flow_id`` (default
        ``<dag_id>.<task_id>`` of the flow task).
    :param on_change: ``reprocess`` or ``ignore`` changed files, as the flow's ``job_config``.
    :param poll_interval: seconds between two listings of the source (default 5). The latency from
        a file's arrival to its run is about half of it plus the scheduler's and a task's start-up.
        Not with ``events``.
    :param recheck_interval: seconds between two ledger checks of every listed file, which
        re-announce what is still unprocessed (files of a run that died, failed files, a ledger
        rewind; with ``events``, files whose message was lost); default 600, ``None`` never.
    :param events: take new files from the S3 event notifications of the bucket in an SQS queue
        instead of listing every ``poll_interval`` (an S3 source only): ``{"sqs_queue": <queue
        URL>, "aws_conn_id": <default: source_conn_id>, "region_name": None, "wait_time_seconds":
        20, "max_messages": 10, "visibility_timeout": None}``; only ``sqs_queue`` is required.
        One queue per flow: the watcher deletes every message it receives.
    :param name: the Asset's name (default ``byo_new_files.<flow_id>``; URI ``x-byo-new-files://<flow_id>``).
    :raises ByoConfigError: a bad or templated argument, named.
    """
    watched = {
        "source": source,
        "flow_id": flow_id,
        "source_conn_id": source_conn_id,
        "include": include,
        "exclude": exclude,
        "recursive": recursive,
        "modified_after": modified_after,
        "min_size": min_size,
        "max_size": max_size,
        "follow_symlinks": follow_symlinks,
        "ledger_conn_id": ledger_conn_id,
        "on_change": on_change,
    }
    return _asset(watched, poll_interval, recheck_interval, events, name)


def _asset(
    watched: dict[str, Any], poll_interval: Any, recheck_interval: Any, events: Any, name: str | None
) -> Asset:
    """The Asset and its watcher, once every argument passed its check."""
    from airflow.sdk import Asset, AssetWatcher

    from airflow_byo.new_files import NewFiles

    _check_arguments(watched)
    new_files = NewFiles.from_kwargs(watched)  # the file selection's own checks (globs, dates, sizes)
    trigger: ByoNewFilesEventTrigger | ByoS3EventsTrigger
    if events is None:
        poll, recheck = check_intervals(
            DEFAULT_POLL_INTERVAL if poll_interval is None else poll_interval, recheck_interval
        )
        trigger = ByoNewFilesEventTrigger(new_files.to_kwargs(), poll_interval=poll, recheck_interval=recheck)
    else:
        settings = _check_events(watched, poll_interval, events)
        trigger = ByoS3EventsTrigger(
            new_files.to_kwargs(), settings, recheck_interval=check_recheck_interval(recheck_interval)
        )
    flow_id = new_files.flow_id
    return Asset(
        name=name or f"byo_new_files.{flow_id}",
        uri=f"x-byo-new-files://{quote(flow_id, safe='')}",
        watchers=[AssetWatcher(name=f"byo_new_files.{flow_id}", trigger=trigger)],
    )


def _check_arguments(watched: dict[str, Any]) -> None:
    """No templates, a source and a flow id, a known ``on_change``: else an error naming the argument."""
    from airflow_byo.operators.source_files import is_templated

    for argument in _TEXT_ARGUMENTS:
        value = watched[argument]
        if value is not None and is_templated(value):
            raise ByoConfigError(
                f"{argument} of new_files_asset cannot be templated ({value!r}): the watcher runs in the "
                "triggerer, outside any DAG run; give the value itself"
            )
    for argument in ("source", "flow_id"):
        if not isinstance(watched[argument], str) or not watched[argument]:
            raise ByoConfigError(
                f"{argument} of new_files_asset must be a non-empty string, got {watched[argument]!r}"
            )
    if watched["on_change"] not in (values := _on_change_values()):
        raise ByoConfigError(f"on_change must be one of {', '.join(values)}, got {watched['on_change']!r}")


def _on_change_values() -> tuple[str, ...]:
    """``job_config.on_change``'s values, from the job config itself (one list of them)."""
    from typing import get_args

    from airflow_byo.runtime_config import JobConfig

    return get_args(JobConfig.model_fields["on_change"].annotation)


def _check_events(watched: dict[str, Any], poll_interval: Any, events: Any) -> dict[str, Any]:
    """``events`` complete and checked, for an S3 source and without ``poll_interval``."""
    from airflow_byo.operators.source_files import is_templated

    if poll_interval is not None:
        raise ByoConfigError(
            f"poll_interval is not used with events (got {poll_interval!r}): the SQS queue replaces the "
            "listing polls, and recheck_interval sets the listings that find what messages missed; "
            "remove poll_interval"
        )
    try:
        split_s3_url(watched["source"])
    except ValueError:
        raise ByoConfigError(
            f"events (S3 event notifications) need an S3 source such as s3://bucket/prefix, got source "
            f"{watched['source']!r}: remove events to list the source every poll_interval instead"
        ) from None
    for key, value in events.items() if isinstance(events, dict) else ():
        if isinstance(value, str) and is_templated(value):
            raise ByoConfigError(
                f"events.{key} of new_files_asset cannot be templated ({value!r}): the watcher runs in "
                "the triggerer, outside any DAG run; give the value itself"
            )
    try:
        return check_events(events, aws_conn_id=watched["source_conn_id"])
    except ValueError as exc:
        raise ByoConfigError(str(exc)) from None
