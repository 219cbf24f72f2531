"""
new_files_asset (airflow_byo.assets): the Asset an event-driven flow's DAG is scheduled on, its
watcher as the DAG serializes it, and the arguments it refuses (its trigger: tests/triggers).
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from airflow_byo import new_files_asset
from airflow_byo.exceptions import ByoConfigError
from airflow_byo.new_files import NewFiles
from tests.conftest import run_airflow as airflow

FLOW = "dag.flow"
#: The event trigger's classpath before issue 22 (in a deployment's trigger table after an upgrade).
OLD_CLASSPATH = "airflow_byo.triggers.new_files_event.ByoNewFilesEventTrigger"


def serialized_watcher(asset: Any) -> Any:
    """The watcher of a DAG scheduled on ``asset``, as the DAG serializes it: its named asset is checked."""
    from datetime import datetime

    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    assert (asset.name, asset.uri) == ("byo_new_files.orders.flow", "x-byo-new-files://orders.flow")
    with DAG("orders", schedule=[asset], start_date=datetime(2024, 1, 1)) as dag:
        pass
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    (watched,) = [a for _, a in serialized.timetable.asset_condition.iter_assets()]
    (watcher,) = watched.watchers
    return watcher


def test_the_asset_schedules_a_dag_that_serializes(tmp_path: Path) -> None:
    asset = new_files_asset(str(tmp_path), flow_id="orders.flow", poll_interval=2, recheck_interval=None)
    watcher = serialized_watcher(asset)
    assert watcher.trigger["classpath"].endswith("ByoNewFilesEventTrigger")
    assert watcher.trigger["kwargs"]["poll_interval"] == 2.0
    assert watcher.trigger["kwargs"]["recheck_interval"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "{{ var.value.landing }}"}, r"source of new_files_asset cannot be templated"),
        ({"flow_id": ""}, r"flow_id of new_files_asset must be a non-empty string"),
        ({"include": ["*.csv", ""]}, r"include must be a glob or a list of globs"),
        ({"modified_after": "yesterday"}, r"modified_after 'yesterday' is not an ISO date/time"),
        ({"poll_interval": 0}, r"poll_interval must be a number of seconds > 0, got 0"),
        ({"poll_interval": "5"}, r"poll_interval must be a number of seconds > 0, got '5'"),
        ({"poll_interval": 10, "recheck_interval": 5}, r"recheck_interval must be .* >= poll_interval \(10"),
        ({"on_change": "skip"}, r"on_change must be one of reprocess, ignore, got 'skip'"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    arguments = {"source": str(tmp_path), "flow_id": FLOW, **kwargs}
    with pytest.raises(ByoConfigError, match=message):
        new_files_asset(**arguments)


QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/landing"


def test_with_events_the_watcher_reads_the_queue_and_the_dag_serializes() -> None:
    source = {"source": "s3://landing/in", "source_conn_id": "aws_landing", "include": ["*.csv"]}
    asset = new_files_asset(flow_id="orders.flow", events={"sqs_queue": QUEUE}, recheck_interval=60, **source)
    watcher = serialized_watcher(asset)
    assert watcher.trigger["classpath"] == "airflow_byo.triggers.s3_events.ByoS3EventsTrigger"
    kwargs = watcher.trigger["kwargs"]
    assert (kwargs["recheck_interval"], kwargs["events"]["sqs_queue"]) == (60.0, QUEUE)
    assert kwargs["events"]["aws_conn_id"] == "aws_landing"  # the source's connection by default
    assert NewFiles.from_kwargs(kwargs["new_files"]) == NewFiles.from_kwargs(
        {"flow_id": "orders.flow", **source}
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"source": "/data/in"},
            r"events \(S3 event notifications\) need an S3 source such as s3://bucket/prefix, "
            r"got source '/data/in': remove events to list the source every poll_interval instead",
        ),
        ({"poll_interval": 5}, r"poll_interval is not used with events \(got 5\): the SQS queue replaces"),
        (
            {"recheck_interval": 0},
            r"recheck_interval must be a number of seconds > 0 or None \(never recheck\), got 0",
        ),
        (
            {"events": {"sqs_queue": "{{ var.value.queue }}"}},
            r"events.sqs_queue of new_files_asset cannot be templated",
        ),
        (
            {"events": {"sqs_queue": QUEUE, "wait": 1}},
            r"events: unknown key\(s\) wait; the keys are sqs_queue",
        ),
        (
            {"events": {"sqs_queue": QUEUE, "wait_time_seconds": 30}},
            r"events.wait_time_seconds must be a whole "
            r"number from 1 to 20, got 30",
        ),
        ({"events": ["sqs"]}, r"events must be a dict such as"),
    ],
)
def test_bad_events_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    arguments = {"source": "s3://landing/in", "flow_id": FLOW, "events": {"sqs_queue": QUEUE}, **kwargs}
    with pytest.raises(ByoConfigError, match=message):
        new_files_asset(**arguments)


def test_the_example_dag_watches_what_its_flow_reads() -> None:
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import ROOT

    bag = DagBag(dag_folder=str(ROOT / "dags_examples" / "byo_customers_on_new_files.py"))
    assert bag.import_errors == {}
    dag = bag.dags["byo_customers_on_new_files"]
    (asset,) = dag.timetable.asset_condition.objects
    (watcher,) = asset.watchers
    flow = dag.get_task("to_jsonl")
    assert NewFiles.from_kwargs(watcher.trigger.new_files) == flow.new_files(flow.resolved_flow_id)


WATCHED_DAG = """
from datetime import datetime

from airflow.sdk import DAG

from airflow_byo import new_files_asset
from airflow_byo.operators.byo_flow import ByoFlowOperator

SOURCE = {{"source": "{source}", "include": ["*.csv"]}}
WATCHED = new_files_asset(flow_id="watched.flow", **SOURCE)
with DAG("watched", schedule=[WATCHED], start_date=datetime(2024, 1, 1)):
    ByoFlowOperator(
        task_id="flow", flow_id="watched.flow", destination="{destination}", processor="m:f", **SOURCE
    )
"""


def test_an_upgrade_replaces_the_watcher_row_of_the_old_classpath(
    tmp_path: Path, migrated_airflow_home: Path
) -> None:
    """
    The event trigger moved from ``airflow_byo.triggers.new_files_event`` (issue 22). A deployment's
    ``trigger`` row of the old classpath no longer loads in the triggerer; the next parses of the DAG
    file link the Asset to a new row (the hash includes the classpath) and drop the old one's
    reference, and the triggerer's ``clean_unused`` deletes the rows no Asset refers to.
    """
    import sqlite3

    dags = tmp_path / "dags"
    dags.mkdir()
    (tmp_path / "in").mkdir()
    text = WATCHED_DAG.format(source=tmp_path / "in", destination=tmp_path / "out")
    (dags / "watched.py").write_text(text)
    env = os.environ | {"AIRFLOW_HOME": str(migrated_airflow_home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    database = migrated_airflow_home / "airflow.db"

    def watchers() -> list[tuple[int, str]]:
        with closing(sqlite3.connect(database)) as db:
            query = "SELECT t.id, t.classpath FROM trigger t JOIN asset_watcher w ON w.trigger_id = t.id"
            return db.execute(query).fetchall()

    assert airflow("dags", "reserialize", env=env).returncode == 0
    assert airflow("dags", "unpause", "watched", env=env).returncode == 0
    assert airflow("dags", "reserialize", env=env).returncode == 0  # an unpaused DAG's watcher: a row
    [(old_id, classpath)] = watchers()
    assert classpath == "airflow_byo.triggers.new_files.ByoNewFilesEventTrigger"
    with closing(sqlite3.connect(database)) as db, db:  # the row as an airflow-byo before issue 22 left it
        db.execute("UPDATE trigger SET classpath = ? WHERE id = ?", (OLD_CLASSPATH, old_id))

    # Airflow 3.3 drops the old row's reference at the next parse of the DAG file, and with it the
    # new row's it links in the same parse (a watcher just linked has no trigger loaded yet, so its
    # hash is not kept); the parse after that links a new row for good.
    for _ in range(2):
        assert airflow("dags", "reserialize", env=env).returncode == 0
    [(new_id, classpath)] = watchers()
    assert (new_id != old_id, classpath) == (True, "airflow_byo.triggers.new_files.ByoNewFilesEventTrigger")
    assert airflow("dags", "reserialize", env=env).returncode == 0
    assert watchers() == [(new_id, classpath)]  # and it stays
    clean = "from airflow.models.trigger import Trigger; Trigger.clean_unused()"  # the triggerer's every loop
    subprocess.run([sys.executable, "-c", clean], env=env, check=True, capture_output=True)
    with closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT id, classpath FROM trigger").fetchall() == [(new_id, classpath)]
