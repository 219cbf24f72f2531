"""
Event-driven flows in a real deployment (issue 17 item 5): no sensor, an AssetWatcher in the
triggerer schedules the flow's DAG when files land.

Two flows on the shared deployment: a DAG file using ``new_files_asset`` on a local source, and a
flow spec with ``schedule: on new files`` on an S3 source (the watcher lists S3 through the
``aws`` connection from inside the triggerer). Dropping a file into each source makes its DAG run
(an ``asset_triggered`` run) and publish the output; the files waiting for a run are not
announced again (one run per landing, not a storm); a later file makes one more run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.deployment import Deployment

pytestmark = pytest.mark.e2e

FOLDER = "event_driven"  # inside the shared DAGs folder
DAG_FILE = f"{FOLDER}/byo_e2e_event_driven.py"
FACTORY = f"{FOLDER}/byo_e2e_event_driven_specs.py"
CODE_DAG, SPEC_DAG = "byo_e2e_events_code", "byo_e2e_events_spec"
BUCKET = "byo-e2e-events"
POLL = 1  # seconds: the watchers' poll_interval (default 5; bench/latency.py measures that)

DAG_TEXT = '''
"""An event-driven flow: runs when new CSV files land in {source} (tests/e2e/test_event_driven.py)."""
from datetime import datetime

from airflow.sdk import DAG

from airflow_byo import new_files_asset
from airflow_byo.operators.byo_flow import ByoFlowOperator

SOURCE = {{"source": "{source}", "include": ["*.csv"]}}

with DAG(
    dag_id="{dag_id}",
    schedule=[new_files_asset(flow_id="{dag_id}.flow", poll_interval={poll}, **SOURCE)],
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

    deployment.write_dag_file(
        DAG_FILE, DAG_TEXT.format(dag_id=CODE_DAG, source=local_in, destination=code_out, poll=POLL)
    )
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
