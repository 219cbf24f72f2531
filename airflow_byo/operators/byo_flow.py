"""ByoFlowOperator: run a user's function on the files of a source, writing to a destination."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoConfigError, ByoError, ByoFilesFailedError, ByoFilesHeldError
from airflow_byo.flow_config import JobConfig, RuntimeConfig, parse_runtime_config
from airflow_byo.ledger.holders import HeldFiles
from airflow_byo.ledger.runs import RunIdentity
from airflow_byo.ledger.tracking import LedgerTracker
from airflow_byo.lineage import asset_uri, compact, lineage
from airflow_byo.metrics import emit_metrics
from airflow_byo.notifications.channels import NotificationRouter, parse_channels
from airflow_byo.operators.source_files import SourceFilesOperator, is_templated
from airflow_byo.path_policy import ProtectedFolder, check_local_paths, check_sample, ledger_files
from airflow_byo.processor import ProcessorSource, resolve_processor
from airflow_byo.runner.flow_runner import FlowRunner
from airflow_byo.runner.preview import format_previews, locate_test_file, preview_file
from airflow_byo.runtimes import apply_runtime, effective_packages, get_runtime, package_overrides
from airflow_byo.storage.location import Location
from airflow_byo.summary import RunSummary

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence

    from airflow.sdk import Context, XComArg

    from airflow_byo.new_files import NewFiles

__all__ = ["ByoFlowOperator"]

#: ``params`` key that switches a run to test mode (``airflow tasks test ... -t '{"test_file": ...}'``).
TEST_FILE_PARAM = "test_file"


class ByoFlowOperator(SourceFilesOperator):
    """
    Run your own Python function on every file of a source, in an isolated virtualenv.

    The function receives each file and a context (see :mod:`airflow_byo.runtime.contract`) and
    returns or writes outputs, which are published atomically to the destination. The task's
    return value is a compact run summary. With ``params.test_file`` set (e.g. ``airflow tasks
    test <dag> <task> -t '{"test_file": "/path/sample.csv"}'``) it runs the function on that one
    file, logs a preview of the outputs and writes nothing.

    The source and file-selection arguments (``source``, ``source_conn_id``, ``include``,
    ``exclude``, ``recursive``, ``modified_after``, ``min_size``, ``max_size``,
    ``ledger_conn_id``) are :class:`~airflow_byo.operators.source_files.SourceFilesOperator`'s.

    :param destination: directory or URL to write outputs to (templated).
    :param processor: inline code, ``"package.module:function"``, or a Python function.
    :param function_name: function to call in inline code (default ``process``).
    :param destination_conn_id: Airflow connection for a remote destination (templated).
    :param packages: PEP 508 requirements, ``"p1==1.0.1,p2==0.0.2"`` or a list (templated); added
        to the runtime's base packages, and a pin of a package the runtime also names overrides it.
    :param runtime: a named runtime of ``[byo] runtimes`` (base packages or an interpreter, sandbox
        defaults, default job_config limits); default: the built-in ``default`` runtime.
    :param runtime_config: runtime variables & configuration, a dict or JSON string with optional
        ``custom_code`` and ``job_config`` keys (templated).
    :param allow_direct_urls: accept ``name @ https://...`` requirements in ``packages``.
    :param python_interpreter: run in this existing interpreter instead of a built virtualenv;
        ``packages`` must then be empty (install them into that interpreter yourself).
    :param venv_cache_path: where environments are cached (default ``[byo] venv_cache_path``).
    :param track_files: record processed files in the ledger and process each file once (default);
        ``False`` processes every matching file on every run.
    :param flow_id: the flow's name in the ledger (default ``<dag_id>.<task_id>``).
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
        *SourceFilesOperator.template_fields,
        "destination",
        "destination_conn_id",
        "packages",
        "runtime_config",
        "quarantine",
        "files",
        "flow_id",  # templated, and so serialized: the BYO Flows page finds the flow's ledger by it
    )
    template_fields_renderers = {"runtime_config": "json"}
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        destination: str,
        processor: str | Callable[..., Any],
        function_name: str | None = None,
        destination_conn_id: str | None = None,
        packages: str | Sequence[str] | None = None,
        runtime: str | None = None,
        runtime_config: str | dict[str, Any] | None = None,
        allow_direct_urls: bool = False,
        python_interpreter: str | None = None,
        venv_cache_path: str | os.PathLike[str] | None = None,
        track_files: bool = True,
        flow_id: str | None = None,
        quarantine: str | None = None,
        quarantine_conn_id: str | None = None,
        files: dict[str, Any] | str | XComArg | None = None,
        notifications: list[dict[str, Any]] | None = None,
        fail_on_notification_error: bool = False,
        emit_asset_event: bool = True,
        **kwargs: Any,
    ) -> None:
        if emit_asset_event and "outlets" not in kwargs and not is_templated(destination):
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
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.packages = packages
        self.runtime = runtime
        self.runtime_config = runtime_config
        self.allow_direct_urls = allow_direct_urls
        self.python_interpreter = python_interpreter
        self.venv_cache_path = venv_cache_path
        self.track_files = track_files
        self.flow_id = flow_id
        self.quarantine = quarantine
        self.quarantine_conn_id = quarantine_conn_id
        self.files = files
        self._check_paths(rendered=False)  # a templated path is checked once rendered, in execute
        # Resolved and checked at parse time: a broken processor or config is an import error
        # of the DAG file, long before a worker picks the task up.
        self.processor_source: ProcessorSource = resolve_processor(processor, function_name)
        flow_runtime = get_runtime(runtime)  # an unknown name fails the DAG file, listing the known ones
        if python_interpreter and (packages or flow_runtime.packages):
            raise ByoConfigError(
                "packages cannot be combined with python_interpreter: packages are installed into "
                "the flow's own virtualenv; install them into that interpreter instead, or drop "
                "python_interpreter"
                + (f" (runtime {flow_runtime.name!r} has base packages)" if flow_runtime.packages else "")
            )
        if not is_templated(packages):
            effective_packages(flow_runtime, packages, allow_direct_urls=allow_direct_urls)
        if not is_templated(runtime_config):
            self._checked_config()

    # -- what a run is made of -----------------------------------------------------------------
    def _check_paths(self, *, rendered: bool) -> None:
        """
        The path policy on the local source, destination and quarantine: none may lie inside or
        contain a platform folder (:mod:`airflow_byo.path_policy`), nor this flow's own venv cache
        and ledger. Before rendering, templated values are left for :meth:`execute`.
        """
        paths = {"source": self.source, "destination": self.destination, "quarantine": self.quarantine}
        check_local_paths(
            {
                key: value
                for key, value in paths.items()
                if isinstance(value, str) and (rendered or not is_templated(value))
            },
            extra=self._own_folders(),
        )

    def _own_folders(self) -> list[ProtectedFolder]:
        """What this flow runs from besides the platform's defaults: its venv cache and ledger."""
        own = ledger_files(self.ledger_conn_id) if self.ledger_conn_id else []
        if self.venv_cache_path and not self.python_interpreter:
            own.append(ProtectedFolder("the flow's venv cache", str(self.venv_cache_path), "venv_cache_path"))
        return own

    def _checked_config(self) -> RuntimeConfig:
        config = apply_runtime(get_runtime(self.runtime), parse_runtime_config(self.runtime_config))
        self.processor_source.check(list(config.custom_code.args), dict(config.custom_code.kwargs))
        return config

    @property
    def resolved_flow_id(self) -> str:
        return self.flow_id or f"{self.dag_id}.{self.task_id}"

    def _python(self) -> tuple[str, list[str]]:
        """The interpreter the children run in, and the requirements it was built from."""
        if self.python_interpreter:
            return self.python_interpreter, []
        flow_runtime = get_runtime(self.runtime)
        requirements = effective_packages(
            flow_runtime, self.packages, allow_direct_urls=self.allow_direct_urls
        )
        if python := flow_runtime.checked_python():
            self.log.info("Runtime %r: interpreter %s", flow_runtime.name, python)
            return python, requirements
        for base, pin in package_overrides(flow_runtime, self.packages):
            self.log.info("The flow's %s overrides %s of runtime %r", pin, base, flow_runtime.name)
        self.log.info("Runtime %r: packages %s", flow_runtime.name, ", ".join(requirements) or "(none)")
        from airflow_byo.environment import ensure_environment

        cache = Path(self.venv_cache_path) if self.venv_cache_path else None
        return str(ensure_environment(requirements, cache)), requirements

    def _runner(
        self,
        config: RuntimeConfig,
        *,
        quarantine: Location | None = None,
        router: NotificationRouter | None = None,
    ) -> tuple[FlowRunner, _Environment]:
        """The runner, and the environment it runs in (for the summary)."""
        started = time.monotonic()
        python, requirements = self._python()
        runner = FlowRunner(
            processor=self.processor_source,
            config=config,
            python=python,
            log=self.log,
            on_notify=router.child_notifications(self.resolved_flow_id) if router else None,
            quarantine=quarantine,
            read_only_paths=get_runtime(self.runtime).read_only_paths,
        )
        return runner, _Environment(get_runtime(self.runtime).name, requirements, time.monotonic() - started)

    def _quarantine_location(self, destination: Location) -> Location:
        if self.quarantine:
            return Location(self.quarantine, self.quarantine_conn_id, role="quarantine")
        return Location(f"{destination.url}/_quarantine", destination.conn_id, role="quarantine")

    # -- execution -----------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        self._check_paths(rendered=True)
        config = self._checked_config()
        test_file = (context.get("params") or {}).get(TEST_FILE_PARAM)
        if test_file:
            return self._execute_test(str(test_file), config, key=f"params.{TEST_FILE_PARAM}")
        new_files = self.new_files(
            self.resolved_flow_id, on_change=config.job_config.on_change, track_files=self.track_files
        )
        destination = Location(self.destination, self.destination_conn_id, role="destination")
        snapshot = new_files.load_snapshot(_parsed(self.files)) if self.files else None
        run = RunIdentity.current(new_files.flow_id, context.get("ti")) if new_files.ledger else None
        held = self._held_claims(new_files, run, config.job_config)  # before this run claims any
        listed, files = new_files.find(snapshot)
        self.log.info(
            "%d file(s) in %s, %d not processed yet by flow %r",
            listed,
            new_files.location.describe(),
            len(files),
            new_files.flow_id,
        )
        if files:
            summary = self._process(config, new_files, destination, files, run)
        else:
            summary = RunSummary(source=new_files.location.url, destination=destination.url)
        summary.files_listed = listed
        summary.files_claimed_elsewhere, summary.claims_elsewhere_expire = held.count, held.until
        summary.claim_holders = [h.as_dict() for h in held.holders]
        summary.files_taken_over = sum(t.files for t in held.taken_over)
        summary.claims_taken_over = [t.as_dict() for t in held.taken_over]
        fail_held = (
            held.error(new_files.flow_id) if held.count and config.job_config.on_held == "fail" else None
        )
        return self._report(context, summary, new_files.flow_id, held_error=fail_held)

    def _held_claims(self, new_files: NewFiles, run: RunIdentity | None, job: JobConfig) -> HeldFiles:
        """
        Take over the claims of provably dead runs; report the files other runs hold, after
        waiting for them with ``on_held: wait`` (at most until the last claim seen expires).
        """
        held = new_files.held_elsewhere(run)
        taken = list(held.taken_over)
        if held.count and job.on_held == "wait":
            deadline = (held.last or 0.0) + 1.0
            self.log.info(
                "%s; on_held is 'wait': waiting for them until %s",
                held.what(new_files.flow_id),
                datetime.fromtimestamp(deadline, UTC).isoformat(timespec="seconds"),
            )
            poll = max(0.2, min(10.0, job.lease_seconds / 10))
            while held.count and (left := deadline - time.time()) > 0:
                time.sleep(min(poll, left))
                held = new_files.held_elsewhere(run)
                taken += held.taken_over
            if not held.count:
                self.log.info("The held files were released or their claims expired: processing them")
        held = HeldFiles(held.holders, tuple(taken))
        if held.taken_over:
            self.log.warning("%s", held.takeover_message(new_files.flow_id))
        if held.count:
            self.log.warning("%s", held.message(new_files.flow_id))
        return held

    def _process(
        self,
        config: RuntimeConfig,
        new_files: NewFiles,
        destination: Location,
        files: list[Any],
        run: RunIdentity | None = None,
    ) -> RunSummary:
        """Claim, process, publish and settle ``files``; notifications delivered as they come."""
        job = config.job_config
        quarantine = self._quarantine_location(destination) if job.error_policy == "quarantine" else None
        router = NotificationRouter(self.notifications, self.log) if self.notifications else None
        try:
            runner, environment = self._runner(config, quarantine=quarantine, router=router)
            if new_files.ledger is None:
                summary = runner.run(new_files.location, destination, files)
            else:
                tracker = LedgerTracker(new_files.ledger, lease_seconds=job.lease_seconds, run=run)
                with tracker:
                    summary = runner.run(new_files.location, destination, files, tracker)
                summary.files_taken_elsewhere = tracker.taken_elsewhere
        finally:
            if router is not None:
                router.close()
        if router is not None:
            summary.counters["notifications_delivered"] = router.delivered
            summary.counters["notifications_failed"] = router.failed
        environment.describe(summary)
        return summary

    def _report(
        self, context: Context, summary: RunSummary, flow_id: str, held_error: str | None = None
    ) -> dict[str, Any]:
        """
        Log, publish and return the summary; fail the task (summary still in XCom) on failures,
        and on files held elsewhere with ``on_held: fail`` (``held_error``).
        """
        self.log.info("%s", summary.format_table())
        result = summary.as_dict()
        emit_metrics(result, flow_id)
        if self.emit_asset_event and self.outlets:
            outlet_events = context.get("outlet_events")
            if outlet_events is not None:
                outlet_events[self.outlets[0]].extra = compact(result)
        self._lineage = lineage(summary)
        undelivered = int(summary.counters.get("notifications_failed") or 0)
        if self.notifications and self.fail_on_notification_error and undelivered:
            _fail_with_summary(
                context,
                result,
                ByoError(
                    f"{undelivered} notification(s) could not be delivered and "
                    "fail_on_notification_error is set; the log names each channel and error"
                ),
            )
        if summary.failed:
            names = ", ".join(f.url for f in summary.failed[:10])
            more = f" and {len(summary.failed) - 10} more" if len(summary.failed) > 10 else ""
            _fail_with_summary(
                context,
                result,
                ByoFilesFailedError(
                    f"{len(summary.failed)} of {summary.files_seen} file(s) failed: {names}{more}. "
                    "The log above shows each error and traceback; the XCom holds the run summary"
                ),
            )
        if held_error:
            _fail_with_summary(context, result, ByoFilesHeldError(held_error))
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Input files in, outputs out (capped): read by the OpenLineage provider when installed."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        inputs, outputs = self._lineage
        return OperatorLineage(
            inputs=[Dataset(namespace=ns, name=name) for ns, name in inputs],
            outputs=[Dataset(namespace=ns, name=name) for ns, name in outputs],
        )

    # -- test mode -----------------------------------------------------------------------------
    def preview(self, sample: str) -> dict[str, Any]:
        """Test mode outside a task (``airflow byo test``): run on ``sample``, write nothing."""
        return self._execute_test(sample, self._checked_config(), key="sample")

    def _execute_test(self, test_file: str, config: RuntimeConfig, *, key: str) -> dict[str, Any]:
        check_sample(test_file, key)  # the sandbox sees the sample's folder: not a platform folder
        location, file = locate_test_file(test_file, self.source_conn_id)
        self.log.info(
            "Test mode: running the processor on %s; nothing is written to the destination", file.url
        )
        runner, environment = self._runner(config)
        summary, previews = preview_file(runner, location, file)
        environment.describe(summary)
        result = summary.as_dict() | {"preview": [p.as_dict() for p in previews]}
        text = format_previews(result["preview"], heading="Output ")
        self.log.info("%s", "\n".join(text) if text else f"The processor produced no output for {file.url}")
        self.log.info("%s", summary.format_table())
        if summary.failed:
            failure = summary.failed[0]
            raise ByoFilesFailedError(f"test run failed on {file.url}: {failure.error_type}: {failure.error}")
        return result


@dataclass(frozen=True)
class _Environment:
    """Where a run's children ran: the runtime, the requirements of its venv, the time to get it."""

    runtime: str
    requirements: list[str]
    seconds: float

    def describe(self, summary: RunSummary) -> None:
        summary.runtime, summary.requirements = self.runtime, self.requirements
        summary.environment_seconds = self.seconds


def _parsed(files: Any) -> Any:
    """``files=`` as rendered: a dict, or its JSON text."""
    return json.loads(files) if isinstance(files, str) else files


def _fail_with_summary(context: Context, result: dict[str, Any], error: ByoError) -> None:
    """Fail the task, with the run summary still pushed to XCom so the failures can be inspected."""
    context["ti"].xcom_push(key="return_value", value=result)
    raise error
