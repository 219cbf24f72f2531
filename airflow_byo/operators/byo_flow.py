"""ByoFlowOperator: run a user's function on the files of a source, writing to a destination."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoError, ByoFilesFailedError, ByoFilesHeldError
from airflow_byo.flow import ResolvedFlow
from airflow_byo.ledger.runs import RunIdentity
from airflow_byo.ledger.tracking import LedgerTracker
from airflow_byo.lineage import asset_uri, compact, lineage
from airflow_byo.metrics import emit_metrics
from airflow_byo.notifications.channels import NotificationRouter, parse_channels
from airflow_byo.operators.source_files import SourceFilesOperator, is_templated
from airflow_byo.path_policy import ProtectedFolder, check_local_paths, ledger_files
from airflow_byo.processor import ProcessorSource, resolve_processor
from airflow_byo.results import ClaimsReport
from airflow_byo.runner.flow_runner import FlowRunner
from airflow_byo.runner.preview import format_previews
from airflow_byo.runner.start_up import environment_and_sandbox, sandbox_probe
from airflow_byo.sample_run import run_sample
from airflow_byo.storage.location import Location

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence
    from concurrent.futures import Future

    from airflow.sdk import Context, XComArg

    from airflow_byo.new_files import NewFiles
    from airflow_byo.results import RunSummary
    from airflow_byo.runner.start_up import SandboxMode

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
        # Templated, and so serialized: the BYO Flows page finds the flow's ledger by flow_id (and
        # SourceFilesOperator's ledger_conn_id), and tests it on its runtime and interpreter.
        "flow_id",
        "runtime",
        "python_interpreter",
        "allow_direct_urls",
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
        self._ran: RunSummary | None = None  # the last run, for its OpenLineage datasets
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
        # Resolved and checked at parse time: a broken processor, runtime, package or config is an
        # import error of the DAG file, long before a worker picks the task up. What is templated
        # is resolved once rendered (execute); the processor never is (it is no template field).
        self.processor_source: ProcessorSource = resolve_processor(processor, function_name)
        self._flow: tuple[str, ResolvedFlow] | None = None  # (the arguments it was resolved from, it)
        if not is_templated(self._declared()):
            self.flow  # noqa: B018 -- resolved (and checked) now

    # -- what a run is made of -----------------------------------------------------------------
    def _declared(self) -> dict[str, Any]:
        """What the flow is resolved from besides the processor (rendered, once templates are)."""
        return {
            "packages": self.packages,
            "runtime": self.runtime,
            "runtime_config": self.runtime_config,
            "allow_direct_urls": self.allow_direct_urls,
            "python_interpreter": self.python_interpreter,
            "venv_cache_path": self.venv_cache_path,
        }

    @property
    def flow(self) -> ResolvedFlow:
        """
        The flow, resolved once: when the DAG file is parsed, or -- when an argument is templated --
        once rendered (resolved again only if rendering changed an argument).
        """
        declared = self._declared()
        key = json.dumps(declared, sort_keys=True, default=str)
        if self._flow is None or self._flow[0] != key:
            self._flow = (key, ResolvedFlow.resolve(self.processor_source, **declared))
        return self._flow[1]

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
        conn_id = self.ledger_conn_id
        own = ledger_files(conn_id) if conn_id and not is_templated(conn_id) else []
        if self.venv_cache_path and not self.python_interpreter:
            own.append(ProtectedFolder("the flow's venv cache", str(self.venv_cache_path), "venv_cache_path"))
        return own

    @property
    def resolved_flow_id(self) -> str:
        return self.flow_id or f"{self.dag_id}.{self.task_id}"

    def _quarantine_location(self, destination: Location) -> Location | None:
        """Where failed inputs go under ``error_policy: quarantine`` (``None`` under the others)."""
        if not self.flow.job.quarantines_failures:
            return None
        if self.quarantine:
            return Location(self.quarantine, self.quarantine_conn_id, role="quarantine")
        return Location(f"{destination.url}/_quarantine", destination.conn_id, role="quarantine")

    # -- execution -----------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        self._check_paths(rendered=True)
        flow = self.flow
        test_file = (context.get("params") or {}).get(TEST_FILE_PARAM)
        if test_file:
            return self._execute_test(str(test_file))
        probe = sandbox_probe()  # while the files are listed (issue 24)
        new_files = self.new_files(
            self.resolved_flow_id, on_change=flow.job.on_change, track_files=self.track_files
        )
        destination = Location(self.destination, self.destination_conn_id, role="destination")
        snapshot = new_files.load_snapshot(_parsed(self.files)) if self.files else None
        run = RunIdentity.current(new_files.flow_id, context.get("ti")) if new_files.ledger else None
        held = new_files.held_before_claiming(run, flow.job, self.log)  # before this run claims any
        listed, files = new_files.find(snapshot)
        self.log.info(
            "%d file(s) in %s, %d not processed yet by flow %r",
            listed,
            new_files.location.describe(),
            len(files),
            new_files.flow_id,
        )
        summary, taken_elsewhere, delivered = self._process(new_files, destination, files, run, probe)
        summary = replace(
            summary,
            claims=ClaimsReport(
                files_listed=listed,
                files_taken_elsewhere=taken_elsewhere,
                files_claimed_elsewhere=held.count,
                claims_elsewhere_expire=held.until,
                claim_holders=[h.as_dict() for h in held.holders],
                files_taken_over=sum(t.files for t in held.taken_over),
                claims_taken_over=[t.as_dict() for t in held.taken_over],
            ),
            delivered=delivered,
        )
        fail_held = held.error(new_files.flow_id) if held.count and flow.job.on_held == "fail" else None
        return self._report(context, summary, new_files.flow_id, held_error=fail_held)

    def _process(
        self,
        new_files: NewFiles,
        destination: Location,
        files: list[Any],
        run: RunIdentity | None,
        probe: Future[SandboxMode],
    ) -> tuple[RunSummary, int, tuple[int, int] | None]:
        """
        Claim, process, publish and settle ``files``, notifications delivered as they come: the
        run's summary, the files other runs took first, and the notifications delivered/failed.
        ``probe``: the sandbox probe the task started (:func:`sandbox_probe`).
        """
        flow = self.flow
        if not files:  # nothing to do: no environment, no children
            return flow.summary(new_files.location.url, destination.url), 0, None
        router = NotificationRouter(self.notifications, self.log) if self.notifications else None
        try:
            environment, sandbox = environment_and_sandbox(flow, self.log, probe)
            runner = FlowRunner(
                flow=flow,
                environment=environment,
                log=self.log,
                on_notify=router.child_notifications(self.resolved_flow_id) if router else None,
                quarantine=self._quarantine_location(destination),
                sandbox=sandbox,
            )
            if new_files.ledger is None:
                return runner.run(new_files.location, destination, files), 0, None
            tracker = LedgerTracker(new_files.ledger, lease_seconds=flow.job.lease_seconds, run=run)
            with tracker:
                summary = runner.run(new_files.location, destination, files, tracker)
        finally:
            if router is not None:
                router.close()
        delivered = (router.delivered, router.failed) if router is not None else None
        return summary, tracker.taken_elsewhere, delivered

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
        self._ran = summary  # its lineage is worked out only if OpenLineage asks (issue 24: not in every run)
        undelivered = summary.delivered[1] if summary.delivered else 0
        if self.notifications and self.fail_on_notification_error and undelivered:
            _fail_with_summary(
                context,
                result,
                ByoError(
                    f"{undelivered} notification(s) could not be delivered and "
                    "fail_on_notification_error is set; the log names each channel and error"
                ),
            )
        if failed := summary.files_failed:
            names = ", ".join(f.url for f in summary.failed[:10])
            more = f" and {failed - 10} more" if failed > 10 else ""
            _fail_with_summary(
                context,
                result,
                ByoFilesFailedError(
                    f"{failed} of {summary.files_seen} file(s) failed: {names}{more}. "
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

        inputs, outputs = lineage(self._ran) if self._ran is not None else ([], [])
        return OperatorLineage(
            inputs=[Dataset(namespace=ns, name=name) for ns, name in inputs],
            outputs=[Dataset(namespace=ns, name=name) for ns, name in outputs],
        )

    # -- test mode -----------------------------------------------------------------------------
    def _execute_test(self, test_file: str) -> dict[str, Any]:
        """Test mode (``params.test_file``): the function on that one file; previews logged, no writes."""
        sample = run_sample(
            self.flow, test_file, log=self.log, conn_id=self.source_conn_id, key=f"params.{TEST_FILE_PARAM}"
        )
        result = sample.as_dict()
        text = format_previews(result["preview"], heading="Output ")
        url = result["source"]
        self.log.info("%s", "\n".join(text) if text else f"The processor produced no output for {url}")
        self.log.info("%s", sample.summary.format_table())
        sample.raise_for_failure()
        return result


def _parsed(files: Any) -> Any:
    """``files=`` as rendered: a dict, or its JSON text."""
    return json.loads(files) if isinstance(files, str) else files


def _fail_with_summary(context: Context, result: dict[str, Any], error: ByoError) -> None:
    """Fail the task, with the run summary still pushed to XCom so the failures can be inspected."""
    context["ti"].xcom_push(key="return_value", value=result)
    raise error
