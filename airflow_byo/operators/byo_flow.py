"""ByoFlowOperator: run a user's function on the files of a source, writing to a destination."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_byo.config import RuntimeConfig, parse_runtime_config
from airflow_byo.discovery import NewFiles
from airflow_byo.exceptions import ByoConfigError, ByoError, ByoFilesFailedError
from airflow_byo.flow import FlowRunner
from airflow_byo.insights import asset_uri, compact, emit_metrics, lineage
from airflow_byo.ledger.tracking import LedgerTracker
from airflow_byo.notifications.channels import LEVELS, Notification, NotificationRouter, parse_channels
from airflow_byo.packages import parse_packages
from airflow_byo.processor import ProcessorSource, resolve_processor
from airflow_byo.storage import Location
from airflow_byo.summary import RunSummary

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from airflow.sdk import Context, XComArg

    from airflow_byo.storage import SourceFile

__all__ = ["ByoFlowOperator"]

#: ``params`` key that switches a run to test mode (``airflow tasks test ... -t '{"test_file": ...}'``).
TEST_FILE_PARAM = "test_file"


def _is_templated(value: Any) -> bool:
    """True when ``value`` still holds Jinja markup, i.e. can only be validated after rendering."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return "{{" in text or "{%" in text


class ByoFlowOperator(BaseOperator):
    """
    Run your own Python function on every file of a source, in an isolated virtualenv.

    The function receives each file and a context (see :mod:`airflow_byo.runtime.contract`) and
    returns or writes outputs, which are published atomically to the destination. The task's
    return value is a compact run summary. With ``params.test_file`` set (e.g. ``airflow tasks
    test <dag> <task> -t '{"test_file": "/path/sample.csv"}'``) it runs the function on that one
    file, logs a preview of the outputs and writes nothing.

    :param source: directory or URL to read files from (templated).
    :param destination: directory or URL to write outputs to (templated).
    :param processor: inline code, ``"package.module:function"``, or a Python function.
    :param function_name: function to call in inline code (default ``process``).
    :param source_conn_id: Airflow connection for a remote source (templated).
    :param destination_conn_id: Airflow connection for a remote destination (templated).
    :param include: globs a file must match, on its relative path or name (templated).
    :param exclude: globs that exclude a file (templated).
    :param recursive: also list files in sub-directories.
    :param modified_after: only files modified after this time (datetime or ISO string, templated).
    :param min_size: only files of at least this many bytes.
    :param max_size: only files of at most this many bytes.
    :param packages: PEP 508 requirements, ``"p1==1.0.1,p2==0.0.2"`` or a list (templated).
    :param runtime_config: runtime variables & configuration, a dict or JSON string with optional
        ``custom_code`` and ``job_config`` keys (templated).
    :param allow_direct_urls: accept ``name @ https://...`` requirements in ``packages``.
    :param python_interpreter: run in this existing interpreter instead of a built virtualenv;
        ``packages`` must then be empty (install them into that interpreter yourself).
    :param venv_cache_path: where environments are cached (default ``[byo] venv_cache_path``).
    :param track_files: record processed files in the ledger and process each file once (default);
        ``False`` processes every matching file on every run.
    :param flow_id: the flow's name in the ledger (default ``<dag_id>.<task_id>``).
    :param ledger_conn_id: connection of the ledger database (default ``[byo] ledger_conn_id``,
        else SQLite under ``$AIRFLOW_HOME/byo``).
    :param quarantine: where ``error_policy: quarantine`` puts failed inputs and their error
        records (default ``<destination>/_quarantine``; templated).
    :param quarantine_conn_id: connection for ``quarantine`` (default: the destination's).
    :param files: the files to process instead of listing the source: a sensor's or planner's
        XCom, ``{"snapshot": id}`` or ``{"snapshot": id, "batch": i, "of": n}`` (templated).
    :param notifications: channels for ``ctx.notify()`` messages (webhook, email, slack, file;
        see :mod:`airflow_byo.notifications.channels`).
    :param fail_on_notification_error: fail the task when a notification cannot be delivered
        (by default it is logged and counted in the summary).
    :param emit_asset_event: declare the destination as the task's Asset outlet and attach the
        run summary to its event (default), so downstream DAGs can be scheduled on new data.
    """

    template_fields: Sequence[str] = (
        "source",
        "source_conn_id",
        "destination",
        "destination_conn_id",
        "include",
        "exclude",
        "modified_after",
        "packages",
        "runtime_config",
        "quarantine",
        "files",
    )
    template_fields_renderers = {"runtime_config": "json"}
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        source: str,
        destination: str,
        processor: str | Callable[..., Any],
        function_name: str | None = None,
        source_conn_id: str | None = None,
        destination_conn_id: str | None = None,
        include: Sequence[str] | str = ("*",),
        exclude: Sequence[str] | str = (),
        recursive: bool = True,
        modified_after: datetime | str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        packages: str | Sequence[str] | None = None,
        runtime_config: str | dict[str, Any] | None = None,
        allow_direct_urls: bool = False,
        python_interpreter: str | None = None,
        venv_cache_path: str | os.PathLike[str] | None = None,
        track_files: bool = True,
        flow_id: str | None = None,
        ledger_conn_id: str | None = None,
        quarantine: str | None = None,
        quarantine_conn_id: str | None = None,
        files: dict[str, Any] | str | XComArg | None = None,
        notifications: list[dict[str, Any]] | None = None,
        fail_on_notification_error: bool = False,
        emit_asset_event: bool = True,
        **kwargs: Any,
    ) -> None:
        if emit_asset_event and "outlets" not in kwargs and not _is_templated(destination):
            from airflow.sdk import Asset

            # Providers validate Asset URIs (e.g. sftp:// needs a host, which lives in the
            # connection and is not looked up at parse time): such destinations get no default
            # outlet; pass outlets=[Asset(...)] explicitly for them.
            with contextlib.suppress(ValueError):
                kwargs["outlets"] = [Asset(asset_uri(destination))]
        super().__init__(**kwargs)
        self.notifications = parse_channels(notifications)
        self.fail_on_notification_error = fail_on_notification_error
        self.emit_asset_event = emit_asset_event
        self._lineage: tuple[list[tuple[str, str]], list[tuple[str, str]]] = ([], [])
        self.source = source
        self.destination = destination
        self.source_conn_id = source_conn_id
        self.destination_conn_id = destination_conn_id
        self.include = include
        self.exclude = exclude
        self.recursive = recursive
        self.modified_after = modified_after
        self.min_size = min_size
        self.max_size = max_size
        self.packages = packages
        self.runtime_config = runtime_config
        self.allow_direct_urls = allow_direct_urls
        self.python_interpreter = python_interpreter
        self.venv_cache_path = venv_cache_path
        self.track_files = track_files
        self.flow_id = flow_id
        self.ledger_conn_id = ledger_conn_id
        self.quarantine = quarantine
        self.quarantine_conn_id = quarantine_conn_id
        self.files = files
        # Resolved and checked at parse time: a broken processor or config is an import error
        # of the DAG file, long before a worker picks the task up.
        self.processor_source: ProcessorSource = resolve_processor(processor, function_name)
        if python_interpreter and packages:
            raise ByoConfigError(
                "packages cannot be combined with python_interpreter: packages are installed into "
                "the flow's own virtualenv; install them into that interpreter instead, or drop "
                "python_interpreter"
            )
        if not _is_templated(packages):
            parse_packages(packages, allow_direct_urls=allow_direct_urls)
        if not _is_templated(runtime_config):
            self._checked_config()
        if not _is_templated([include, exclude, modified_after]):
            self._new_files(None)

    # -- validation ----------------------------------------------------------------------------
    def _checked_config(self) -> RuntimeConfig:
        config = parse_runtime_config(self.runtime_config)
        self.processor_source.check(list(config.custom_code.args), dict(config.custom_code.kwargs))
        return config

    def _new_files(self, config: RuntimeConfig | None) -> NewFiles:
        return NewFiles.of_task(
            self,
            flow_id=self.flow_id or f"{self.dag_id}.{self.task_id}",
            on_change=config.job_config.on_change if config else "reprocess",
            track_files=self.track_files,
        )

    # -- environment ---------------------------------------------------------------------------
    def _python(self) -> str:
        if self.python_interpreter:
            return self.python_interpreter
        from airflow_byo.environment import ensure_environment

        requirements = parse_packages(self.packages, allow_direct_urls=self.allow_direct_urls)
        cache = Path(self.venv_cache_path) if self.venv_cache_path else None
        return str(ensure_environment(requirements, cache))

    def _runner(
        self,
        config: RuntimeConfig,
        quarantine: Location | None = None,
        router: NotificationRouter | None = None,
        flow_id: str = "",
    ) -> tuple[FlowRunner, float]:
        started = time.monotonic()
        python = self._python()
        runner = FlowRunner(
            processor=self.processor_source, config=config, python=python, log=self.log, quarantine=quarantine
        )
        if router is not None:
            log_it = runner.on_notify

            def deliver(url: str, event: dict[str, Any]) -> None:
                log_it(url, event)
                router.submit(
                    Notification(
                        level=event.get("level", "info") if event.get("level") in LEVELS else "info",
                        message=event.get("message", ""),
                        fields=event.get("fields") or {},
                        file=url,
                        flow=flow_id,
                    )
                )

            runner.on_notify = deliver
        return runner, time.monotonic() - started

    def _quarantine_location(self, destination: Location) -> Location:
        if self.quarantine:
            return Location(self.quarantine, self.quarantine_conn_id, role="quarantine")
        return Location(f"{destination.url}/_quarantine", destination.conn_id, role="quarantine")

    def _snapshot(self, new_files: NewFiles) -> list[SourceFile] | None:
        """The file list handed over by a sensor or planner (``files=``), if any."""
        if not self.files:
            return None
        pointer = json.loads(self.files) if isinstance(self.files, str) else self.files
        if not isinstance(pointer, dict) or not pointer.get("snapshot"):
            raise ByoConfigError(
                f"files must be a sensor's or planner's XCom like {{'snapshot': '<id>'}}, got {self.files!r}"
            )
        ledger = new_files.ledger()
        if ledger is None:
            raise ByoConfigError("files= needs the ledger (track_files=True): snapshots are stored there")
        return ledger.load_snapshot(
            str(pointer["snapshot"]), batch=int(pointer.get("batch", 0)), of=int(pointer.get("of", 1))
        )

    # -- execution -----------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        config = self._checked_config()
        params = context.get("params") or {}
        test_file = params.get(TEST_FILE_PARAM)
        if test_file:
            return self._execute_test(str(test_file), config)

        new_files = self._new_files(config)
        source = new_files.location()
        destination = Location(self.destination, self.destination_conn_id, role="destination")
        listed, files = new_files.find(self._snapshot(new_files))
        self.log.info(
            "%d file(s) in %s, %d not processed yet by flow %r",
            listed,
            source.describe(),
            len(files),
            new_files.flow_id,
        )
        if not files:
            summary = RunSummary(source=source.url, destination=destination.url)
        else:
            quarantine = (
                self._quarantine_location(destination)
                if config.job_config.error_policy == "quarantine"
                else None
            )
            router = NotificationRouter(self.notifications, self.log) if self.notifications else None
            runner, environment_seconds = self._runner(config, quarantine, router, new_files.flow_id)
            ledger = new_files.ledger()
            try:
                if ledger is None:
                    summary = runner.run(source, destination, files)
                else:
                    with LedgerTracker(ledger, lease_seconds=config.job_config.lease_seconds) as tracker:
                        summary = runner.run(source, destination, files, tracker)
                    summary.files_taken_elsewhere = tracker.taken_elsewhere
            finally:
                if router is not None:
                    router.close()
            if router is not None:
                summary.counters["notifications_delivered"] = router.delivered
                summary.counters["notifications_failed"] = router.failed
            summary.environment_seconds = environment_seconds
        summary.files_listed = listed
        self.log.info("%s", summary.format_table())
        result = summary.as_dict()
        self._publish_insights(context, summary, result, new_files.flow_id)
        if (
            self.notifications
            and self.fail_on_notification_error
            and summary.counters.get("notifications_failed")
        ):
            context["ti"].xcom_push(key="return_value", value=result)
            raise ByoError(
                f"{int(summary.counters['notifications_failed'])} notification(s) could not be delivered "
                "and fail_on_notification_error is set; the log names each channel and error"
            )
        if summary.failed:
            # The task fails, but the summary still reaches XCom so the failures can be inspected.
            context["ti"].xcom_push(key="return_value", value=result)
            names = ", ".join(f.url for f in summary.failed[:10])
            more = f" and {len(summary.failed) - 10} more" if len(summary.failed) > 10 else ""
            raise ByoFilesFailedError(
                f"{len(summary.failed)} of {summary.files_seen} file(s) failed: {names}{more}. "
                "The log above shows each error and traceback; the XCom holds the run summary"
            )
        return result

    def _publish_insights(
        self, context: Context, summary: RunSummary, result: dict[str, Any], flow_id: str
    ) -> None:
        """Metrics, the destination's Asset event, and what OpenLineage will ask for."""
        emit_metrics(result, flow_id)
        if self.emit_asset_event and self.outlets:
            outlet_events = context.get("outlet_events")
            if outlet_events is not None:
                outlet_events[self.outlets[0]].extra = compact(result)
        self._lineage = lineage(summary, self.destination)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Input files in, outputs out (capped): read by the OpenLineage provider when installed."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        inputs, outputs = self._lineage
        return OperatorLineage(
            inputs=[Dataset(namespace=ns, name=name) for ns, name in inputs],
            outputs=[Dataset(namespace=ns, name=name) for ns, name in outputs],
        )

    def preview(self, sample: str) -> dict[str, Any]:
        """Test mode outside a task (``airflow byo test``): run on ``sample``, write nothing."""
        return self._execute_test(sample, self._checked_config())

    def _execute_test(self, test_file: str, config: RuntimeConfig) -> dict[str, Any]:
        if "://" in test_file and not test_file.startswith("file://"):
            parent, _, name = test_file.rstrip("/").rpartition("/")
            location = Location(parent, self.source_conn_id, role="test_file")
        else:
            path = os.path.abspath(os.path.expanduser(test_file.removeprefix("file://")))
            parent, name = os.path.split(path)
            location = Location(parent, role="test_file")
        file = location.file_info(name)
        self.log.info(
            "Test mode: running the processor on %s; nothing is written to the destination", file.url
        )
        runner, environment_seconds = self._runner(config)
        summary, previews = runner.test(location, file)
        summary.environment_seconds = environment_seconds
        for preview in previews:
            records = f", {preview.records} records" if preview.records is not None else ""
            body = "\n".join(f"    {line}" for line in preview.lines)
            more = "\n    ..." if preview.truncated else ""
            self.log.info("Output %s (%d bytes%s):\n%s%s", preview.name, preview.size, records, body, more)
        if not previews:
            self.log.info("The processor produced no output for %s", file.url)
        self.log.info("%s", summary.format_table())
        result = summary.as_dict() | {"preview": [p.as_dict() for p in previews]}
        if summary.failed:
            failure = summary.failed[0]
            raise ByoFilesFailedError(f"test run failed on {file.url}: {failure.error_type}: {failure.error}")
        return result
