"""Flow specs with ``schedule: on new files``: an Asset watching the source schedules the DAG."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from airflow_byo.exceptions import ByoFlowSpecError
from airflow_byo.new_files import NewFiles
from airflow_byo.specs.factory import build_dags, load_flow
from airflow_byo.specs.loader import load_spec
from airflow_byo.specs.model import json_schema

SPEC = """\
name: orders
source:
  type: local
  path: landing
  include: ["*.csv"]
  exclude: ["tmp_*"]
schedule: on new files
watch: {poll_interval: 2, recheck_interval: 300}
processing:
  code: |
    def process(file, ctx):
        return "x"
  runtime_config: {job_config: {on_change: ignore}}
destination:
  type: local
  path: /data/out
"""


def write(folder: Path, text: str, name: str = "orders.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def watcher_trigger(dag: Any) -> Any:
    (asset,) = dag.timetable.asset_condition.objects
    (watcher,) = asset.watchers
    return asset, watcher.trigger


def test_on_new_files_watches_the_source_as_the_flow_reads_it(tmp_path: Path) -> None:
    write(tmp_path, SPEC)
    dag = build_dags(tmp_path)["byo_flow__orders"]
    assert dag.is_paused_upon_creation is True
    assert dag.task_ids == ["flow"]  # no sensor: nothing waits in a worker or per run
    asset, trigger = watcher_trigger(dag)
    assert asset.name == "byo_new_files.orders.flow"
    assert (trigger.poll_interval, trigger.recheck_interval) == (2.0, 300.0)
    watched = NewFiles.from_kwargs(trigger.new_files)
    flow = dag.get_task("flow")
    assert watched == flow.new_files(flow.resolved_flow_id, on_change="ignore")
    assert watched.source == str(tmp_path / "landing")  # relative to the spec file, as the flow's
    assert watched.selection.exclude == ("tmp_*",)


def test_defaults_and_the_other_spelling(tmp_path: Path) -> None:
    spec = SPEC.replace("schedule: on new files\nwatch: {poll_interval: 2, recheck_interval: 300}\n", "")
    write(tmp_path, spec.replace("name: orders\n", "name: orders\nschedule: on_new_files\n"))
    _, trigger = watcher_trigger(load_flow(tmp_path / "orders.yaml").dag)
    assert (trigger.poll_interval, trigger.recheck_interval) == (5.0, 600.0)
    assert trigger.new_files["on_change"] == "ignore"
    write(tmp_path, SPEC.replace("recheck_interval: 300", "recheck_interval: null"))
    assert watcher_trigger(load_flow(tmp_path / "orders.yaml").dag)[1].recheck_interval is None


def test_the_shipped_schema_accepts_it() -> None:
    jsonschema.validate(yaml.safe_load(SPEC), json_schema())


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "schedule: on new files\n",
            "schedule: hourly\n",
            r"orders\.yaml:8: watch: only used with schedule 'on new files' \(schedule is 'hourly'\): "
            r"remove watch, or set schedule: on new files",
        ),
        (
            "watch: {poll_interval: 2, recheck_interval: 300}\n",
            "sensor: {deferrable: true}\n",
            r"orders\.yaml:8: sensor: not used with schedule 'on new files', whose watcher already waits",
        ),
        (
            "poll_interval: 2",
            "poll_interval: 0",
            r"orders\.yaml:8: watch\.poll_interval: Input should be greater",
        ),
        (
            "recheck_interval: 300",
            "recheck_interval: 1",
            r"orders\.yaml:8: watch\.recheck_interval: must be at least poll_interval \(2 s\), or null",
        ),
        ("poll_interval: 2", "poll_intervall: 2", r"watch\.poll_intervall: .*did you mean 'poll_interval'\?"),
        (
            "schedule: on new files",
            "schedule: on new file",
            r"orders\.yaml:7: schedule: 'on new file' is not a schedule: use one of .*, on new files, a cron",
        ),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in SPEC
    write(tmp_path, SPEC.replace(old, new, 1))
    with pytest.raises(ByoFlowSpecError, match=message):
        load_spec(tmp_path / "orders.yaml")


def test_a_sensor_counts_changed_files_as_its_flow_does(tmp_path: Path) -> None:
    spec = SPEC.replace("schedule: on new files\nwatch: {poll_interval: 2, recheck_interval: 300}\n", "")
    write(tmp_path, spec.replace("name: orders\n", "name: orders\nsensor: {deferrable: true}\n"))
    dag = load_flow(tmp_path / "orders.yaml").dag
    assert dag.get_task("wait_for_new_files").on_change == "ignore"


# -- watch.events: S3 event notifications through SQS ------------------------------------------------

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-landing"
S3_SPEC = SPEC.replace(
    "  type: local\n  path: landing\n", "  type: s3\n  conn_id: aws_landing\n  path: landing/orders\n", 1
).replace(
    "watch: {poll_interval: 2, recheck_interval: 300}",
    f"watch: {{events: {{sqs_queue: '{QUEUE}', wait_time_seconds: 10}}, recheck_interval: 300}}",
)


def test_watch_events_makes_an_s3_events_watcher_on_the_sources_connection(tmp_path: Path) -> None:
    from airflow_byo.triggers.s3_events import ByoS3EventsTrigger

    write(tmp_path, S3_SPEC)
    _, trigger = watcher_trigger(load_flow(tmp_path / "orders.yaml").dag)
    assert isinstance(trigger, ByoS3EventsTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["events"]["sqs_queue"] == QUEUE
    assert kwargs["events"]["wait_time_seconds"] == 10
    assert kwargs["events"]["aws_conn_id"] == "aws_landing"  # the source's connection by default
    assert kwargs["recheck_interval"] == 300.0
    jsonschema.validate(yaml.safe_load(S3_SPEC), json_schema())


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "events: {",
            "poll_interval: 2, events: {",
            r"orders\.yaml:\d+: watch\.events: poll_interval is not used with events .*: remove poll_",
        ),
        (
            "wait_time_seconds: 10",
            "wait_time_seconds: 30",
            r"watch\.events: events\.wait_time_seconds must be a whole number from 1 to 20, got 30",
        ),
        ("wait_time_seconds: 10", "wait: 10", r"watch\.events: events: unknown key\(s\) wait; the keys are"),
        (
            "  type: s3\n  conn_id: aws_landing\n  path: landing/orders\n",
            "  type: local\n  path: landing\n",
            r"watch\.events reads S3 event notifications, but the source is local: use an S3 source",
        ),
    ],
)
def test_bad_events_name_the_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in S3_SPEC
    write(tmp_path, S3_SPEC.replace(old, new, 1))
    with pytest.raises(ByoFlowSpecError, match=message):
        load_spec(tmp_path / "orders.yaml")
