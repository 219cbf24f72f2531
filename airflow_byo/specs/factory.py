"""
The DAG factory: a folder of flow specs becomes DAGs, each created paused.

One line in a DAG file does it (see ``dags_examples/byo_flows_from_specs.py``)::

    globals().update(build_dags(Path(__file__).parent / "flows"))

An invalid spec must not take the valid ones down with it, and must still be seen: its problems
become the import error of the DAG file (``airflow dags list-import-errors`` and the UI show the
spec file, line, field and fix) while every valid spec's DAG loads. Nothing slow happens here:
no network, no connection lookups, no virtualenv; only file reads and validation.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from airflow_byo.exceptions import ByoError, ByoFlowSpecError
from airflow_byo.specs.loader import find_specs, load_spec
from airflow_byo.specs.model import FlowSpec, schedule_of

__all__ = ["build_dag", "build_dags"]

START_DATE = datetime(2024, 1, 1)


class _InvalidFlowSpecs(DAG):
    """Carries the problems of invalid specs into the import errors of the factory's DAG file."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(dag_id="byo_invalid_flow_specs", schedule=None, start_date=START_DATE)
        self.problems = problems

    def validate(self) -> None:
        raise ByoFlowSpecError(
            f"{len(self.problems)} invalid flow spec(s); the other flows loaded:\n" + "\n".join(self.problems)
        )


def build_dag(spec: FlowSpec, spec_file: Path | None = None) -> DAG:
    """One flow spec -> one DAG (paused at creation): an optional sensor, then the flow task."""
    from airflow_byo.operators.byo_flow import ByoFlowOperator
    from airflow_byo.sensors.new_files import ByoNewFilesSensor

    processing = spec.processing
    processor, function_name, packages = processing.resolved()
    source = spec.source

    def url(location: Any) -> str:
        """Relative local paths are relative to the spec file's folder."""
        if location.type == "local" and spec_file is not None and not Path(location.path).is_absolute():
            return str((spec_file.parent / location.path).resolve())
        return str(location.url)

    flow_id = f"{spec.name}.flow"
    doc = f"{spec.description}\n\nGenerated from flow spec `{spec_file}`." if spec_file else spec.description
    callbacks: dict[str, Any] = {}
    notifications = spec.notifications
    if notifications:
        from airflow_byo.notifications.notifier import ByoFlowNotifier

        channels = notifications.channels
        on_success = [
            ByoFlowNotifier(channels=channels, event=e) for e in notifications.events if e != "failed"
        ]
        if notifications.data_delay_minutes:
            on_success.append(
                ByoFlowNotifier(
                    channels=channels,
                    event="data_delay",
                    level="warning",
                    delay_minutes=notifications.data_delay_minutes,
                )
            )
        if on_success:
            callbacks["on_success_callback"] = on_success
        if "failed" in notifications.events:
            callbacks["on_failure_callback"] = [
                ByoFlowNotifier(channels=channels, event="failed", level="error")
            ]
    with DAG(
        dag_id=spec.name,
        description=spec.description or None,
        doc_md=doc,
        schedule=schedule_of(spec.schedule),
        start_date=START_DATE,
        catchup=False,
        is_paused_upon_creation=True,  # nothing moves until someone switches the flow on
        tags=["byo", *spec.tags],
        default_args={"owner": spec.owner},
    ) as dag:
        filters: dict[str, Any] = {
            "source": url(source),
            "source_conn_id": source.conn_id,
            "include": source.include,
            "exclude": source.exclude,
            "recursive": source.recursive,
            "modified_after": source.modified_after,
            "min_size": source.min_size,
            "max_size": source.max_size,
        }
        files: Any = None
        if spec.sensor:
            files = ByoNewFilesSensor(
                task_id="wait_for_new_files",
                flow_id=flow_id,
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
            runtime_config=processing.runtime_config,
            files=files,
            notifications=notifications.channels if notifications else None,
            fail_on_notification_error=bool(notifications and notifications.fail_on_error),
            **callbacks,
            **filters,
        )
    return dag


def build_dags(folder: str | Path) -> dict[str, DAG]:
    """Every valid spec of ``folder`` as a DAG, keyed for ``globals().update(...)``."""
    dags: dict[str, DAG] = {}
    problems: list[str] = []
    for spec_file in find_specs(folder):
        try:
            spec = load_spec(spec_file)
            if spec.name in dags:
                raise ByoFlowSpecError(
                    f"{spec_file}: name: {spec.name!r} is used by another spec. Fix: rename one"
                )
            dags[f"byo_flow__{spec.name}"] = build_dag(spec, spec_file)
        except ByoError as exc:
            problems.append(str(exc))
    if problems:
        dags["byo_invalid_flow_specs"] = _InvalidFlowSpecs(problems)
    return dags
