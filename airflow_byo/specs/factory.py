"""
The DAG factory: a folder of flow specs becomes DAGs, each created paused.

One line in a DAG file does it (see ``dags_examples/byo_flows_from_specs.py``)::

    globals().update(build_dags(Path(__file__).parent / "flows"))

Nothing slow happens here: no network, no connection lookups, no virtualenv; only bounded file
reads (:mod:`airflow_byo.specs.loader`) and validation.

**One bad spec never takes the others down** (https://github.com/airflow-byo/airflow-byo/issues/14).
How Airflow 3.3's dag-processor treats a DAG file decides how the factory reports bad specs:

- Each ``.py`` file of the bundle is parsed in its own process (``dag_processing/processor.py``,
  ``_parse_file`` -> ``DagBag.process_file`` -> ``PythonDagImporter.import_file``). If the module
  raises, the file has no DAGs, only an import error. If one DAG of the file fails
  ``dag.validate()`` while being bagged, the other DAGs are kept, but the error is recorded under
  the *file's* path.
- The manager then stores the result (``dag_processing/manager.py`` ``persist_parsing_result`` ->
  ``collection.update_dag_parsing_results_in_db`` -> ``_update_import_errors``). For every import
  error it runs ``UPDATE dag SET is_stale=true, has_import_errors=true WHERE relative_fileloc =
  <that path>``: any import error of the factory's file marks **every** DAG of that file stale. That
  is why the old placeholder DAG whose ``validate()`` raised made all declared flows vanish from
  ``/api/v2/dags`` (404 on trigger) in a real deployment, while ``airflow dags list`` still showed them.
- An import error under another key (a DAG made to fail serialization with its ``fileloc`` set to the
  spec, which ``_serialize_dags`` would key by ``relative_fileloc``) does not help either: errors are
  only cleared for the parsed file and the keys it reports, and ``clear_orphaned_import_errors`` deletes
  every error whose filename is not a discovered ``.py`` file at each bundle refresh, so such errors
  would blink out every ``[dag_processor] refresh_interval`` and linger after a fix. DAG warnings are
  no way out: a parse result carries only the dag-version stability check's warnings.

So the factory's own file never gets an import error: valid specs become DAGs of this file, and
**each spec gets a DAG file of its own, managed by the factory** (:mod:`airflow_byo.specs.error_files`):
``byo_spec_errors/<spec>_<hash>.py`` beside the factory's DAG file. That file defines no DAG; its parse
(:func:`airflow_byo.specs.error_report.report`) raises the spec's problems, so they are the import
error of *that* file only (UI, ``airflow dags list-import-errors``, ``GET /api/v2/importErrors``), as
``<file>:<line>: <field.path>: <problem>. Fix: ...``; while the spec is valid it raises nothing.

Why one per spec and not one per *invalid* spec (issue 23): Airflow parses a DAG file it knows every
``[dag_processor] min_file_process_interval`` (30 s) -- and at once when its modification time
changed -- but finds a *new* file only at the next bundle refresh (``refresh_interval``, 300 s). A
file written when a spec turns invalid was found minutes later; a file that exists from the moment
its spec appears shows the problem within the interval. The file of a valid spec carries the
fingerprint of the bytes the factory validated, so its parse is a read and a hash while the spec is
unchanged (bench S3), and the factory rewrites it when its verdict changes. The files are written
only when their text changes; a deleted spec's file goes (it deletes itself, and the factory's next
parse removes it). Spec files are written only when the factory runs inside Airflow's DAG parsing
(or with ``dag_file=``); if the folder is read-only, the problems are logged instead. ``airflow byo
validate`` runs the very same checks (:func:`load_flow`, with :mod:`airflow_byo.specs.checks`) before
anything is deployed.

At each such parse the factory also records its DAG file in the spec folder's marker
(:mod:`airflow_byo.specs.factory_marker`), so the flow editor can have exactly that file parsed
again right after a save (:func:`airflow_byo.dag_parsing.request_reparse`).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from airflow_byo.exceptions import ByoError, ByoFlowSpecError
from airflow_byo.specs import error_files, factory_marker
from airflow_byo.specs.checks import check_locations, check_processor, field_of_build_error, split_fix
from airflow_byo.specs.loader import SpecDocument, find_specs, parse_spec
from airflow_byo.specs.model import ON_NEW_FILES, FlowSpec, SensorSpec, SourceSpec, WatchSpec, schedule_of

__all__ = ["Flow", "FlowCollection", "build_dag", "build_dags", "collect_flows", "load_flow", "problem_of"]

log = logging.getLogger(__name__)

START_DATE = datetime(2024, 1, 1)


@dataclass(frozen=True)
class Flow:
    """
    A spec file that passed every check, and its DAG. Not its YAML node tree: a folder's flows
    are all alive at once while the factory runs, and 1,000 node trees were ~20 MB of the
    parse's peak that hand-written DAGs never hold (issue 24, bench S4).
    """

    path: Path
    spec: FlowSpec
    dag: DAG
    #: the spec file's fingerprint when it was read (:func:`airflow_byo.specs.loader.fingerprint`)
    fingerprint: str


@dataclass
class FlowCollection:
    """What a folder of specs gives: the valid specs' flows, and the problems of the others."""

    flows: list[Flow] = field(default_factory=list)
    problems: dict[Path, str] = field(default_factory=dict)

    @property
    def dags(self) -> dict[str, DAG]:
        """The DAGs, keyed for ``globals().update(...)`` of a DAG file."""
        return {f"byo_flow__{flow.spec.name}": flow.dag for flow in self.flows}


def _callbacks(notifications: Any) -> dict[str, Any]:
    """The flow task's success/failure callbacks for the spec's notification events."""
    from airflow_byo.notifications.notifier import ByoFlowNotifier

    channels = notifications.channels
    on_success = [ByoFlowNotifier(channels=channels, event=e) for e in notifications.events if e != "failed"]
    if notifications.data_delay_minutes:
        on_success.append(
            ByoFlowNotifier(
                channels=channels,
                event="data_delay",
                level="warning",
                delay_minutes=notifications.data_delay_minutes,
            )
        )
    callbacks: dict[str, Any] = {}
    if on_success:
        callbacks["on_success_callback"] = on_success
    if "failed" in notifications.events:
        callbacks["on_failure_callback"] = [ByoFlowNotifier(channels=channels, event="failed", level="error")]
    return callbacks


def _on_change(spec: FlowSpec) -> str:
    """The flow's ``job_config.on_change``: what its sensor or watcher counts as new, too."""
    from airflow_byo.runtime_config import parse_runtime_config

    return parse_runtime_config(spec.processing.runtime_config).job_config.on_change


def _new_files_asset(spec: FlowSpec, flow_id: str, filters: dict[str, Any]) -> Any:
    """The Asset of ``schedule: on new files``: its watcher sees the flow's source as the flow does."""
    from airflow_byo.assets import new_files_asset

    watch = spec.watch or WatchSpec()
    return new_files_asset(
        flow_id=flow_id,
        on_change=_on_change(spec),
        poll_interval=watch.poll_interval,
        recheck_interval=watch.recheck_interval,
        events=watch.events,
        **filters,
    )


def _filters(source: SourceSpec, spec_file: Path | None) -> dict[str, Any]:
    """The source and file-selection arguments, the same for the watcher, the sensor and the flow."""
    return {
        "source": source.url_from(spec_file),
        "source_conn_id": source.conn_id,
        "include": source.include,
        "exclude": source.exclude,
        "recursive": source.recursive,
        "modified_after": source.modified_after,
        "min_size": source.min_size,
        "max_size": source.max_size,
        "follow_symlinks": source.follow_symlinks,
    }


def _dag(spec: FlowSpec, spec_file: Path | None, schedule: Any) -> DAG:
    """The flow's DAG, without tasks yet."""
    doc = f"{spec.description}\n\nGenerated from flow spec `{spec_file}`." if spec_file else spec.description
    return DAG(
        dag_id=spec.name,
        description=spec.description or None,
        doc_md=doc,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        is_paused_upon_creation=True,  # nothing moves until someone switches the flow on
        tags=["byo", *spec.tags],
        default_args={"owner": spec.owner},
        # Exported through build_dags' dict only: a DAG whose build failed half-way, or one built
        # just to check a spec (validate, an error file, a duplicate name) never lands in a DagBag.
        auto_register=False,
    )


def _sensor_output(sensor: SensorSpec, on_change: str, flow_id: str, filters: dict[str, Any]) -> Any:
    """The ``sensor:`` task; its output is the files it found, which the flow then processes."""
    from airflow_byo.sensors.new_files import ByoNewFilesSensor

    return ByoNewFilesSensor(
        task_id="wait_for_new_files",
        flow_id=flow_id,
        on_change=on_change,
        deferrable=sensor.deferrable,
        poke_interval=sensor.poke_interval,
        timeout=sensor.timeout,
        soft_fail=True,
        **filters,
    ).output  # the flow processes what the sensor found (and depends on it)


def _flow_task(
    spec: FlowSpec, spec_file: Path | None, flow_id: str, filters: dict[str, Any], files: Any
) -> None:
    """The flow task; ``files``: what the sensor found, when the spec has one."""
    from airflow_byo.operators.byo_flow import ByoFlowOperator

    processing = spec.processing
    processor, function_name, packages, runtime = processing.resolved()
    notifications = spec.notifications
    callbacks = _callbacks(notifications) if notifications else {}
    ByoFlowOperator(
        task_id="flow",
        flow_id=flow_id,
        destination=spec.destination.url_from(spec_file),
        destination_conn_id=spec.destination.conn_id,
        processor=processor,
        function_name=function_name,
        packages=packages,
        runtime=runtime,
        runtime_config=processing.runtime_config,
        files=files,
        notifications=notifications.channels if notifications else None,
        fail_on_notification_error=bool(notifications and notifications.fail_on_error),
        **callbacks,
        **filters,
    )


def build_dag(spec: FlowSpec, spec_file: Path | None = None) -> DAG:
    """
    One flow spec -> one DAG (paused at creation): an optional sensor, then the flow task;
    ``schedule: on new files`` schedules it on an Asset watching the source instead.
    """
    flow_id = f"{spec.name}.flow"
    filters = _filters(spec.source, spec_file)
    schedule = schedule_of(spec.schedule)
    if schedule == ON_NEW_FILES:
        schedule = [_new_files_asset(spec, flow_id, filters)]
    with _dag(spec, spec_file, schedule) as dag:
        files = _sensor_output(spec.sensor, _on_change(spec), flow_id, filters) if spec.sensor else None
        _flow_task(spec, spec_file, flow_id, filters, files)
    return dag


def load_flow(path: str | Path) -> Flow:
    """
    Every check the factory makes on one spec file, and the DAG it gives.

    The same function serves the factory, the error files, ``airflow byo validate`` and
    ``airflow byo test --spec``, so they cannot disagree about a file.

    :raises ByoFlowSpecError: every problem as ``<file>:<line>: <field.path>: <problem>. Fix: <fix>``.
    """
    return _checked(path)[1]


def _checked(path: str | Path) -> tuple[SpecDocument, Flow]:
    """:func:`load_flow`, and the spec's document (for errors at its lines) while it is needed."""
    document, spec = parse_spec(path)
    check_processor(document, spec)
    check_locations(document, spec)
    try:
        dag = build_dag(spec, document.path)
    except ByoError as exc:
        message = str(exc)
        raise ByoFlowSpecError(document.error(field_of_build_error(message), *split_fix(message))) from None
    return document, Flow(path=document.path, spec=spec, dag=dag, fingerprint=document.fingerprint)


def _problem(spec_file: Path, exc: Exception) -> str:
    if isinstance(exc, ByoFlowSpecError):
        return str(exc)
    if isinstance(exc, ByoError):
        return f"{spec_file}: (spec): {exc}"
    # anything else is a bug of ours, but it still must not take the other flows down
    return f"{spec_file}: (spec): unexpected {type(exc).__name__} while loading the spec: {exc}"


def collect_flows(files: list[Path]) -> FlowCollection:
    """Load spec files one by one (a failure stays with its file); a name is kept by its first file."""
    collection = FlowCollection()
    owners: dict[str, Path] = {}
    for spec_file in files:
        try:
            document, flow = _checked(spec_file)
        except Exception as exc:  # noqa: BLE001 - whatever one file does, the others still load
            collection.problems[spec_file] = _problem(spec_file, exc)
            continue
        owner = owners.get(flow.spec.name)
        if owner is not None:
            collection.problems[spec_file] = document.error(
                ("name",), f"{flow.spec.name!r} is already the name of {owner}", "rename one of them"
            )
            continue
        owners[flow.spec.name] = spec_file
        collection.flows.append(flow)
    return collection


def problem_of(spec_file: Path, folder: Path) -> str | None:
    """The problems :func:`collect_flows` finds for ``spec_file`` of ``folder`` (None: it is valid)."""
    try:
        name = parse_spec(spec_file)[1].name
    except Exception as exc:  # noqa: BLE001 - reported, like collect_flows does
        return _problem(spec_file, exc)
    earlier = []  # a name is kept by the first valid file in order: only files of the same name matter
    for other in find_specs(folder):
        if other.resolve() == spec_file.resolve():
            break
        try:
            if parse_spec(other)[1].name == name:
                earlier.append(other)
        except Exception:  # noqa: BLE001 - an invalid file keeps no name
            continue
    return collect_flows([*earlier, spec_file]).problems.get(spec_file)


def _parsing_dag_file() -> Path | None:
    """The DAG file calling :func:`build_dags` when Airflow's DAG importer runs it, else None."""
    frame = sys._getframe(2)
    module = str(frame.f_globals.get("__name__", ""))
    path = frame.f_globals.get("__file__")
    return Path(path) if path and module.startswith("unusual_prefix_") else None


def build_dags(folder: str | Path, *, dag_file: str | Path | None = None) -> dict[str, DAG]:
    """
    Every valid spec of ``folder`` as a DAG, keyed for ``globals().update(...)``.

    Invalid specs never raise here: each spec has a DAG file of its own that carries its problems
    (see the module docs), and the folder's marker names this DAG file.

    :param dag_file: the DAG file the spec files go beside (default: the calling DAG file, when
        Airflow's DAG parsing runs it; otherwise no files are written).
    """
    dag_file = Path(dag_file) if dag_file is not None else _parsing_dag_file()
    specs = find_specs(folder)
    collection = collect_flows(specs)
    if dag_file is None:
        for problem in collection.problems.values():
            log.warning("invalid flow spec: %s", problem)
        return collection.dags
    valid = {flow.path: flow.fingerprint for flow in collection.flows}
    verdicts = {spec_file: valid.get(spec_file) for spec_file in specs}
    error_files.update(dag_file, Path(folder), verdicts, collection.problems)
    factory_marker.record(folder, dag_file)
    return collection.dags
