"""
Event-driven flows in a real deployment (issue 17 item 5, issue 24): no sensor, an AssetWatcher in
the triggerer schedules the flow's DAG when files land.

Two flows on the shared deployment: a DAG file using ``new_files_asset`` on a local source, and a
flow spec with ``schedule: on new files`` on an S3 source (the watcher lists S3 through the
``aws`` connection from inside the triggerer). Dropping a file into each source makes its DAG run
(an ``asset_triggered`` run) and publish the output; the files waiting for a run are not
announced again (one run per landing, not a storm); a later file makes one more run.

A third flow takes its files from S3 event notifications: moto's S3 sends them to its own SQS
queue (tests/s3_event_queue.py), the watcher reads the queue from the triggerer. A put makes one
run that processes the file once; a duplicated message, a message for a processed file and
messages for keys outside the flow's filters make no Asset event; a file whose message is
deleted from the queue is backfilled by the recheck listing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.deployment import Deployment
from tests.s3_event_queue import EventQueue, s3_event

pytestmark = pytest.mark.e2e

FOLDER = "event_driven"  # inside the shared DAGs folder
DAG_FILE = f"{FOLDER}/byo_e2e_event_driven.py"
FACTORY = f"{FOLDER}/byo_e2e_event_driven_specs.py"
CODE_DAG, SPEC_DAG = "byo_e2e_events_code", "byo_e2e_events_spec"
BUCKET = "byo-e2e-events"
POLL = 1  # seconds: the watchers' poll_interval (default 5; bench/latency.py measures that)

DAG_TEXT = '''
"""An event-driven flow: runs when new CSV files land in {source[source]} (tests/e2e/test_event_driven.py)."""
from datetime import datetime

from airflow.sdk import DAG

from airflow_byo import new_files_asset
from airflow_byo.operators.byo_flow import ByoFlowOperator

SOURCE = {source!r}

with DAG(
    dag_id="{dag_id}",
    schedule=[new_files_asset(flow_id="{dag_id}.flow", {watch}, **SOURCE)],
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["byo", "e2e"],
):
    ByoFlowOperator(
        task_id="flow",
        destination="{destination}",
        processor="def process(file, ctx):\\n    return file.open().read().upper()\\n",
        runtime_config={{"job_config": {{"output_format": "text"}}}},
        **SOURCE,
    )
'''


def dag_text(dag_id: str, source: dict[str, Any], destination: Path, **watch: Any) -> str:
    """A DAG file of one event-driven flow reading ``source``; ``watch``: new_files_asset's knobs."""
    knobs = ", ".join(f"{name}={value!r}" for name, value in watch.items())
    return DAG_TEXT.format(dag_id=dag_id, source=source, destination=destination, watch=knobs)


FACTORY_TEXT = '''
"""Every flow spec of specs/ becomes a DAG (tests/e2e/test_event_driven.py)."""
from pathlib import Path

from airflow_byo.specs.factory import build_dags

globals().update(build_dags(Path(__file__).parent / "specs"))
'''

SPEC_TEXT = """\
name: {dag_id}
source: {{type: s3, conn_id: {conn_id}, path: {bucket}/in, include: ["*.csv"]}}
schedule: on new files
watch: {{poll_interval: {poll}}}
processing:
  code: |
    def process(file, ctx):
        return file.open().read().upper()
  runtime_config: {{job_config: {{output_format: text}}}}
destination: {{type: local, path: {destination}}}
tags: [e2e]
"""


def runs(deployment: Deployment, dag_id: str) -> list[dict[str, Any]]:
    return list(deployment.api.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])


def outputs(destination: Path) -> dict[str, str]:
    if not destination.exists():
        return {}
    return {p.name: p.read_text() for p in destination.rglob("*") if p.is_file() and ".byo-" not in p.name}


def test_new_files_schedule_their_flow_through_the_watcher(deployment: Deployment) -> None:
    began = time.monotonic()
    data = deployment.root / "event_driven_data"
    local_in, code_out, spec_out = data / "in", data / "out_code", data / "out_spec"
    local_in.mkdir(parents=True, exist_ok=True)
    assert deployment.s3 is not None
    s3 = deployment.s3.client()
    s3.create_bucket(Bucket=BUCKET)

    source = {"source": str(local_in), "include": ["*.csv"]}
    deployment.write_dag_file(DAG_FILE, dag_text(CODE_DAG, source, code_out, poll_interval=POLL))
    deployment.write_dag_file(
        f"{FOLDER}/specs/events.yaml",
        SPEC_TEXT.format(
            dag_id=SPEC_DAG, conn_id=deployment.s3_conn_id, bucket=BUCKET, destination=spec_out, poll=POLL
        ),
    )
    deployment.write_dag_file(FACTORY, FACTORY_TEXT)
    try:
        for dag_id in (CODE_DAG, SPEC_DAG):
            deployment.wait_for_dag(dag_id, timeout=120)
            deployment.unpause(dag_id)
        # Watcher triggers exist for unpaused DAGs only, made when their file is parsed again.
        deployment.reparse(DAG_FILE)
        deployment.reparse(FACTORY)

        def land(name: str) -> None:
            (local_in / name).write_text(f"id\n{name}\n")
            s3.put_object(Bucket=BUCKET, Key=f"in/{name}", Body=f"id\n{name}\n".encode())

        def published(name: str) -> bool:  # text outputs are named <stem>.txt
            output = name.replace(".csv", ".txt")
            return output in outputs(code_out) and output in outputs(spec_out)

        land("a.csv")
        deployment.wait_until(lambda: published("a.csv"), timeout=300, what="a.csv published by both flows")
        assert outputs(code_out) == {"a.txt": "ID\nA.CSV\n"}
        assert outputs(spec_out) == {"a.txt": "ID\nA.CSV\n"}
        for dag_id in (CODE_DAG, SPEC_DAG):
            (run,) = runs(deployment, dag_id)
            assert run["run_type"] == "asset_triggered"
            deployment.wait_for_run(dag_id, run["dag_run_id"], timeout=120)
            summary = deployment.xcom(dag_id, run["dag_run_id"], "flow")
            assert (summary["files_processed"], summary["files_failed"]) == (1, 0)

        # Several polls later: still one run each (a.csv was announced once, then processed).
        time.sleep(4 * POLL)
        assert [len(runs(deployment, d)) for d in (CODE_DAG, SPEC_DAG)] == [1, 1]

        land("b.csv")
        deployment.wait_until(lambda: published("b.csv"), timeout=120, what="b.csv published by both flows")
        for dag_id in (CODE_DAG, SPEC_DAG):
            latest = deployment.wait_until(
                lambda dag_id=dag_id: [r for r in runs(deployment, dag_id) if r["state"] == "success"][1:],
                timeout=120,
                what=f"the second run of {dag_id} finished",
            )
            assert len(runs(deployment, dag_id)) == 2
            summary = deployment.xcom(dag_id, latest[0]["dag_run_id"], "flow")
            assert summary["files_processed"] == 1
            assert [r["path"] for r in deployment.ledger_rows(f"{dag_id}.flow")] == ["a.csv", "b.csv"]
        deployment.timings["event-driven flows"] = time.monotonic() - began
    finally:
        for dag_id in (CODE_DAG, SPEC_DAG):
            deployment.pause(dag_id)  # their watchers stop at the next parse
        deployment.remove_dag_file(DAG_FILE)
        deployment.remove_dag_file(FACTORY)


# -- S3 event notifications through SQS ---------------------------------------------------------------

EVENTS_DAG_FILE = f"{FOLDER}/byo_e2e_events_sqs.py"
EVENTS_DAG, EVENTS_BUCKET = "byo_e2e_events_sqs", "byo-e2e-sqs-events"
RECHECK = 30  # seconds: the lost message's backfill (default 600)


def asset_events(deployment: Deployment, dag_id: str) -> list[dict[str, Any]]:
    """The payloads of the flow's Asset events (among the deployment's latest 100), oldest first."""
    events = deployment.api.get("/api/v2/assets/events", params={"limit": 100, "order_by": "-timestamp"})
    uri = f"x-byo-new-files://{dag_id}.flow"
    return [e["extra"]["payload"] for e in reversed(events["asset_events"]) if e["uri"] == uri]


def test_s3_events_through_sqs_schedule_their_flow(deployment: Deployment) -> None:
    began = time.monotonic()
    assert deployment.s3 is not None
    queue = EventQueue(deployment.s3, EVENTS_BUCKET, "byo-e2e-sqs-events")
    queue.notify()  # S3 sends an s3:TestEvent: dropped by the watcher
    destination = deployment.root / "event_driven_data" / "out_sqs"
    source = {
        "source": f"s3://{EVENTS_BUCKET}/in",
        "source_conn_id": deployment.s3_conn_id,
        "include": ["*.csv"],
    }
    events = {"sqs_queue": queue.url, "wait_time_seconds": 5}
    text = dag_text(EVENTS_DAG, source, destination, events=events, recheck_interval=RECHECK)
    deployment.write_dag_file(EVENTS_DAG_FILE, text)
    flow_id = f"{EVENTS_DAG}.flow"
    try:
        deployment.wait_for_dag(EVENTS_DAG, timeout=120)
        deployment.unpause(EVENTS_DAG)
        deployment.reparse(EVENTS_DAG_FILE)  # the watcher exists once the unpaused DAG is parsed
        # Messages wait in the queue until the watcher reads them: nothing is lost meanwhile.

        def processed(name: str) -> Any:
            return deployment.wait_until(
                lambda: name.replace(".csv", ".txt") in outputs(destination),
                timeout=300,
                what=f"{name} published by {EVENTS_DAG}",
            )

        queue.put("in/a.csv", b"id\na\n")
        processed("a.csv")
        (run,) = runs(deployment, EVENTS_DAG)
        assert run["run_type"] == "asset_triggered"
        deployment.wait_for_run(EVENTS_DAG, run["dag_run_id"], timeout=120)
        summary = deployment.xcom(EVENTS_DAG, run["dag_run_id"], "flow")
        assert (summary["files_processed"], summary["files_failed"]) == (1, 0)

        # a message for a processed file, keys outside the flow's filters, a duplicated message
        a = queue.s3.head_object(Bucket=EVENTS_BUCKET, Key="in/a.csv")
        queue.send(s3_event(EVENTS_BUCKET, "in/a.csv", a["ContentLength"], a["ETag"]))
        queue.put("in/skip.txt", b"not a csv")
        queue.put("other/c.csv", b"id\nc\n")
        b = queue.put("in/b.csv", b"id\nb\n")
        queue.send(s3_event(EVENTS_BUCKET, "in/b.csv", 5, b["ETag"]))
        processed("b.csv")
        # a file whose message is deleted from the queue: the recheck listing finds it
        queue.put_losing_its_message("in/lost.csv", b"id\nlost\n")
        processed("lost.csv")

        assert outputs(destination) == {"a.txt": "ID\nA\n", "b.txt": "ID\nB\n", "lost.txt": "ID\nLOST\n"}
        done = deployment.ledger_events(flow_id, "done")
        assert done == {"a.csv": 1, "b.csv": 1, "lost.csv": 1}  # each processed once
        payloads = asset_events(deployment, EVENTS_DAG)
        # announced once each: nothing for the duplicate, the processed file or the other keys
        assert [name for p in payloads if not p["recheck"] for name in p["sample"]] == ["a.csv", "b.csv"]
        # lost.csv by the recheck listing (which also re-announces a file whose run has not claimed
        # it yet after RECHECK seconds, e.g. while the first run builds the flow environment)
        rechecked = {name for p in payloads if p["recheck"] for name in p["sample"]}
        assert "lost.csv" in rechecked
        assert rechecked <= {"a.csv", "b.csv", "lost.csv"}
        for finished in [r for r in runs(deployment, EVENTS_DAG) if r["dag_run_id"] != run["dag_run_id"]]:
            deployment.wait_for_run(EVENTS_DAG, finished["dag_run_id"], timeout=120)
            assert finished["run_type"] == "asset_triggered"
        deployment.timings["S3 events through SQS"] = time.monotonic() - began
    finally:
        deployment.pause(EVENTS_DAG)  # its watcher stops at the next parse
        deployment.remove_dag_file(EVENTS_DAG_FILE)
