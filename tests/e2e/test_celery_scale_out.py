"""
Scale-out on CeleryExecutor, end to end (issue 16): a batched flow, S3 in and out, PostgreSQL
ledger, two workers; every input is processed exactly once, also when a worker is SIGKILLed
in the middle of its batch.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

import pytest

from tests.e2e.deployment import WORKERS, Deployment

pytestmark = pytest.mark.e2e

DAG_ID = "byo_e2e_celery_batches"
TASK_ID = "process"
FLOW_ID = f"{DAG_ID}.{TASK_ID}"
BUCKET = "byo-e2e-celery"
FILES_PER_BATCH = 4
PROGRESS = re.compile(r"progress: (\d+)/(\d+) files")

DAG_FILE = '''
"""Batched BYO flow for the Celery end-to-end test: S3 -> S3, one mapped task per batch."""
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_byo.operators.byo_flow import ByoFlowOperator
from airflow_byo.operators.plan_batches import ByoBatchPlanOperator

SOURCE = "s3://{bucket}/in"
DESTINATION = "s3://{bucket}/out"

# Sleeps per file (dag_run.conf "seconds"), so a worker can be killed while its batch runs.
PROCESS = """
import time

def process(file, ctx, *, seconds="0"):
    time.sleep(float(seconds))
    with file.open("rb") as handle:
        data = handle.read()
    return {{"file": file.name, "bytes": len(data)}}
"""

with DAG(
    dag_id="{dag_id}",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["byo", "e2e"],
):
    plan = ByoBatchPlanOperator(
        task_id="plan",
        source=SOURCE,
        source_conn_id="{conn_id}",
        include=["*.csv"],
        flow_id="{flow_id}",
        files_per_batch={files_per_batch},
    )
    ByoFlowOperator.partial(
        task_id="{task_id}",
        flow_id="{flow_id}",
        source=SOURCE,
        source_conn_id="{conn_id}",
        destination=DESTINATION,
        destination_conn_id="{conn_id}",
        include=["*.csv"],
        processor=PROCESS,
        runtime_config={{
            "custom_code": {{"kwargs": {{"seconds": "{{{{ dag_run.conf.get('seconds', 0) }}}}"}}}},
            # A dead worker's claims expire after 6 s, well before its task is declared dead (15 s).
            "job_config": {{"lease_seconds": 6, "timeout_seconds": 60, "progress_interval_seconds": 0.2}},
        }},
        retries=1,
        retry_delay=timedelta(seconds=2),
    ).expand(files=plan.output)
'''


def _put_inputs(s3: Any, names: list[str]) -> None:
    for name in names:
        s3.put_object(Bucket=BUCKET, Key=f"in/{name}", Body=f"id,name\n1,{name}\n".encode())


def _outputs(s3: Any) -> Counter[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="out/")
    return Counter(obj["Key"].removeprefix("out/") for page in pages for obj in page.get("Contents", []))


def _assert_exactly_once(deployment: Deployment, s3: Any, inputs: list[str]) -> None:
    outputs = _outputs(s3)
    expected = {name.replace(".csv", ".jsonl") for name in inputs}
    assert set(outputs) == expected, f"outputs {sorted(outputs)} != one .jsonl per input"
    for name in inputs:
        body = s3.get_object(Bucket=BUCKET, Key=f"out/{name.replace('.csv', '.jsonl')}")["Body"].read()
        records = [json.loads(line) for line in body.decode().splitlines()]
        assert records == [{"file": name, "bytes": len(f"id,name\n1,{name}\n")}], name
    rows = deployment.ledger_rows(FLOW_ID)
    states = Counter((row["path"].removeprefix("in/"), row["state"]) for row in rows)
    assert {path for path, _ in states} == set(inputs), f"ledger paths {sorted(states)}"
    assert all(state == "done" for _, state in states), f"ledger states {states}"
    assert all(count == 1 for count in states.values()), f"duplicate ledger rows {states}"
    done_events = deployment.ledger_events(FLOW_ID, "done")
    assert all(count == 1 for count in done_events.values()), f"a file was marked done twice: {done_events}"
    assert {path.removeprefix("in/") for path in done_events} == set(inputs), done_events


def test_batches_spread_over_both_workers_and_survive_a_killed_worker(deployment: Deployment) -> None:
    s3 = deployment.s3.client()
    s3.create_bucket(Bucket=BUCKET)
    deployment.write_dag_file(
        f"{DAG_ID}.py",
        DAG_FILE.format(
            bucket=BUCKET,
            dag_id=DAG_ID,
            task_id=TASK_ID,
            flow_id=FLOW_ID,
            conn_id=deployment.s3_conn_id,
            files_per_batch=FILES_PER_BATCH,
        ),
    )
    first = [f"first_{i:02d}.csv" for i in range(12)]
    _put_inputs(s3, first)
    dag = deployment.wait_for_dag(DAG_ID)
    assert dag["is_paused"], "declared DAGs start paused"
    deployment.unpause(DAG_ID)

    # 1. Twelve files in three batches: every file once, and both workers took batches.
    began = time.monotonic()
    run_id = deployment.trigger(DAG_ID, {"seconds": 0.3})
    deployment.wait_for_run(DAG_ID, run_id, timeout=240)
    deployment.timings["celery run of 3 batches"] = time.monotonic() - began
    _assert_exactly_once(deployment, s3, first)
    hosts = deployment.hostnames(DAG_ID, run_id, TASK_ID)
    assert len(hosts) == 3, hosts
    assert set(hosts.values()) == set(WORKERS), f"batches ran on {hosts}"
    summaries = [deployment.xcom(DAG_ID, run_id, TASK_ID, map_index=i) for i in range(3)]
    assert sum(s["files_processed"] for s in summaries) == len(first), summaries

    # 2. Eight new files in two slow batches (2 s a file); SIGKILL the worker of a batch that has
    # done one or two of its four files, as its task log's progress lines tell.
    second = [f"second_{i:02d}.csv" for i in range(8)]
    _put_inputs(s3, second)
    began = time.monotonic()
    run_id = deployment.trigger(DAG_ID, {"seconds": 2})
    victim_index, victim = deployment.wait_until(
        lambda: _half_done_batch(deployment, run_id),
        timeout=180,
        what="a batch of the second run half done",
        interval=0.2,
        dag_id=DAG_ID,
        run_id=run_id,
    )
    killed = deployment.kill_worker(victim)
    assert len(killed) >= 3, f"worker, task supervisor and task process: {killed}"

    killed_at = time.monotonic()
    deployment.wait_for_run(DAG_ID, run_id, timeout=240)
    deployment.timings["run with a killed worker"] = time.monotonic() - began
    deployment.timings["of which after the kill"] = time.monotonic() - killed_at
    _assert_exactly_once(deployment, s3, first + second)
    tries = deployment.tries(DAG_ID, run_id, TASK_ID, victim_index)
    survivor = next(name for name in WORKERS if name != victim)
    assert [t["try_number"] for t in tries] == [1, 2], tries
    assert tries[0]["hostname"] == victim, tries
    assert tries[1]["hostname"] == survivor, tries
    retried = deployment.xcom(DAG_ID, run_id, TASK_ID, map_index=victim_index)
    # The first try had settled at least one file, which the retry did not process again.
    assert 1 <= retried["files_processed"] <= FILES_PER_BATCH - 1, retried

    # Leave the shared deployment whole for the next tests (they need not wait: tasks queue).
    deployment.start_worker(victim, wait=False)


def _half_done_batch(deployment: Deployment, run_id: str) -> tuple[int, str] | None:
    """``(map_index, hostname)`` of a running batch with 1 or 2 of its 4 files done, if any."""
    for ti in deployment.task_instances(DAG_ID, run_id):
        if ti["task_id"] != TASK_ID or ti["state"] != "running" or ti["try_number"] != 1:
            continue
        progress = PROGRESS.findall(deployment.task_log(DAG_ID, run_id, TASK_ID, ti["map_index"]))
        if progress and 1 <= int(progress[-1][0]) <= 2 and int(progress[-1][1]) == FILES_PER_BATCH:
            return ti["map_index"], ti["hostname"]
    return None
