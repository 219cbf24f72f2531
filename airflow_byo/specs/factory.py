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

So the factory's own file never gets an import error: valid specs become DAGs of this file, and each
invalid spec gets **a DAG file of its own, managed by the factory** (:mod:`airflow_byo.specs.error_files`):
``byo_spec_errors/<spec>_<hash>.py`` beside the factory's DAG file. That file defines no DAG; its parse
re-checks its spec with the same code and raises the spec's problems, so they are the import error of
*that* file only (UI, ``airflow dags list-import-errors``, ``GET /api/v2/importErrors``), as
``<file>:<line>: <field.path>: <problem>. Fix: ...``. When the spec is fixed or deleted, the next
parse of that file finds nothing wrong, deletes the file and reports no error, which clears it.
Airflow finds a new DAG file at its next bundle refresh (``[dag_processor] refresh_interval``), so a
newly broken spec shows up within that interval; fixes show up at the next parse
(``min_file_process_interval``). Error files are written only when the factory runs inside Airflow's
DAG parsing (or with ``dag_file=``); if the folder is read-only, the problems are logged instead.
``airflow byo validate`` runs the very same checks (:func:`load_flow`) before anything is deployed.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from airflow_byo.exceptions import ByoError, ByoFlowSpecError
from airflow_byo.specs.loader import SpecDocument, find_specs, parse_spec
from airflow_byo.specs.model import ON_NEW_FILES, FlowSpec, WatchSpec, schedule_of

__all__ = ["Flow", "FlowCollection", "build_dag", "build_dags", "collect_flows", "load_flow", "problem_of"]

log = logging.getLogger(__name__)

START_DATE = datetime(2024, 1, 1)


@dataclass(frozen=True)
class Flow:
    """A spec file that passed every check, and its DAG."""

    path: Path
    document: SpecDocument
    spec: FlowSpec
    dag: DAG


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
    from airflow_byo.flow_config import parse_runtime_config

    return parse_runtime_config(spec.processing.runtime_config).job_config.on_change


def _new_files_asset(spec: FlowSpec, flow_id: str, filters: dict[str, Any]) -> Any:
    """The Asset of ``schedule: on new files``: its watcher sees the flow's source as the flow does."""
    from airflow_byo.watchers import new_files_asset

    watch = spec.watch or WatchSpec()
    return new_files_asset(
        flow_id=flow_id,
        on_change=_on_change(spec),
        poll_interval=watch.poll_interval,
        recheck_interval=watch.recheck_interval,
        **filters,
    )


def _location_url(location: Any, spec_file: Path | None) -> str:
    """A source's or destination's URL; relative local paths are relative to the spec file's folder."""
    if location.type == "local" and spec_file is not None and not Path(location.path).is_absolute():
        return str((spec_file.parent / location.path).resolve())
    return str(location.url)


def build_dag(spec: FlowSpec, spec_file: Path | None = None) -> DAG:
    """
    One flow spec -> one DAG (paused at creation): an optional sensor, then the flow task;
    ``schedule: on new files`` schedules it on an Asset watching the source instead.
    """
    from airflow_byo.operators.byo_flow import ByoFlowOperator
    from airflow_byo.sensors.new_files import ByoNewFilesSensor

    processing = spec.processing
    processor, function_name, packages, runtime = processing.resolved()
    source = spec.source

    def url(location: Any) -> str:
        return _location_url(location, spec_file)

    flow_id = f"{spec.name}.flow"
    doc = f"{spec.description}\n\nGenerated from flow spec `{spec_file}`." if spec_file else spec.description
    notifications = spec.notifications
    callbacks = _callbacks(notifications) if notifications else {}
    filters: dict[str, Any] = {
        "source": url(source),
        "source_conn_id": source.conn_id,
        "include": source.include,
        "exclude": source.exclude,
        "recursive": source.recursive,
        "modified_after": source.modified_after,
        "min_size": source.min_size,
        "max_size": source.max_size,
        "follow_symlinks": source.follow_symlinks,
    }
    schedule = schedule_of(spec.schedule)
    if schedule == ON_NEW_FILES:
        schedule = [_new_files_asset(spec, flow_id, filters)]
    with DAG(
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
    ) as dag:
        files: Any = None
        if spec.sensor:
            files = ByoNewFilesSensor(
                task_id="wait_for_new_files",
                flow_id=flow_id,
                on_change=_on_change(spec),
                deferrable=spec.sensor.deferrable,
                poke_interval=spec.sensor.poke_interval,
                timeout=spec.sensor.timeout,
                soft_fail=True,
                **filters,
            ).output  # the flow processes what the sensor found (and depends on it)
        ByoFlowOperator(
            task_id="flow",
            flow_id=flow_id,
            destination=url(spec.destination),
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
    return dag


# -- the checks the DAG build makes, reported at the spec's own lines -------------------------------

_CODE_LINE = re.compile(r" \(line (\d+)\)")


def _split_fix(message: str) -> tuple[str, str]:
    """A project error's message as (problem, fix): ``<problem>. Hint: <fix>`` or ``<problem>; <fix>``."""
    for separator in (". Hint: ", ". Fix: ", "; "):
        problem, found, fix = message.partition(separator)
        if found:
            return problem, fix
    return message, ""


def _processor_field(
    document: SpecDocument, spec: FlowSpec, message: str
) -> tuple[tuple[str, ...], int | None]:
    """The spec field (and line) a processor error is about."""
    processing = spec.processing
    if "cannot be called as" in message:  # the signature does not take custom_code's args/kwargs
        custom = ("processing", "runtime_config", "custom_code")
        config = processing.runtime_config.get("custom_code") or {}
        keyword = "keyword" in message or ("kwargs" in config and "args" not in config)
        if keyword and "kwargs" in config:
            return (*custom, "kwargs"), None
        if "args" in config:
            return (*custom, "args"), None
        return custom, None
    if processing.function:
        return ("processing", "function"), None
    if processing.reference:
        return ("processing", "reference"), None
    if "defines no top-level function" in message and processing.function_name:
        return ("processing", "function_name"), None
    line = None
    node = document.value_node(("processing", "code"))
    match = _CODE_LINE.search(message)
    if node is not None and match:  # the line inside the code, as a line of the spec file
        line = node.start_mark.line + int(match.group(1)) + (1 if node.style in ("|", ">") else 0)
    return ("processing", "code"), line


def _check_processor(document: SpecDocument, spec: FlowSpec) -> None:
    """What ``ByoFlowOperator`` checks at parse time, reported at the spec's lines."""
    from airflow_byo.flow_config import parse_runtime_config
    from airflow_byo.processor import resolve_processor

    try:
        processor, function_name, _, _ = spec.processing.resolved()
    except ByoError as exc:  # e.g. a library function that does not exist
        raise ByoFlowSpecError(document.error(("processing", "function"), *_split_fix(str(exc)))) from None
    try:
        source = resolve_processor(processor, function_name)
        config = parse_runtime_config(spec.processing.runtime_config)
        source.check(list(config.custom_code.args), dict(config.custom_code.kwargs))
    except ByoError as exc:
        message = str(exc)
        loc, line = _processor_field(document, spec, message)
        raise ByoFlowSpecError(document.error(loc, *_split_fix(message), line=line)) from None


def _check_locations(document: SpecDocument, spec: FlowSpec) -> None:
    """The path policy on the source and destination, reported at their ``path`` lines."""
    from airflow_byo.path_policy import check_local_path

    for key in ("source", "destination"):
        try:
            check_local_path(_location_url(getattr(spec, key), document.path), key)
        except ByoError as exc:
            raise ByoFlowSpecError(document.error((key, "path"), *_split_fix(str(exc)))) from None


def _field_of_build_error(spec: FlowSpec, message: str) -> tuple[str, ...]:
    """Best guess at the field an error of the DAG build is about (the message names it)."""
    candidates = [
        ("source", name)
        for name in (
            "include",
            "exclude",
            "modified_after",
            "min_size",
            "max_size",
            "follow_symlinks",
            "path",
        )
    ] + [("processing", "packages"), ("processing", "runtime_config"), ("destination", "path"), ("schedule",)]
    for loc in candidates:
        if re.search(rf"\b{loc[-1]}\b", message):
            return loc
    return ()


def load_flow(path: str | Path) -> Flow:
    """
    Every check the factory makes on one spec file, and the DAG it gives.

    The same function serves the factory, the error files, ``airflow byo validate`` and
    ``airflow byo test --spec``, so they cannot disagree about a file.

    :raises ByoFlowSpecError: every problem as ``<file>:<line>: <field.path>: <problem>. Fix: <fix>``.
    """
    document, spec = parse_spec(path)
    _check_processor(document, spec)
    _check_locations(document, spec)
    try:
        dag = build_dag(spec, document.path)
    except ByoError as exc:
        message = str(exc)
        raise ByoFlowSpecError(
            document.error(_field_of_build_error(spec, message), *_split_fix(message))
        ) from None
    return Flow(path=document.path, document=document, spec=spec, dag=dag)


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
            flow = load_flow(spec_file)
        except Exception as exc:  # noqa: BLE001 - whatever one file does, the others still load
            collection.problems[spec_file] = _problem(spec_file, exc)
            continue
        owner = owners.get(flow.spec.name)
        if owner is not None:
            collection.problems[spec_file] = flow.document.error(
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

    Invalid specs never raise here: each gets an error DAG file of its own (see the module docs).

    :param dag_file: the DAG file the error files go beside (default: the calling DAG file, when
        Airflow's DAG parsing runs it; otherwise no error files are written).
    """
    from airflow_byo.specs import error_files

    dag_file = Path(dag_file) if dag_file is not None else _parsing_dag_file()
    collection = collect_flows(find_specs(folder))
    if collection.problems:
        if dag_file is None:
            for problem in collection.problems.values():
                log.warning("invalid flow spec: %s", problem)
        else:
            error_files.write(dag_file, Path(folder), collection.problems)
    return collection.dags
