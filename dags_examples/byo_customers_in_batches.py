"""
Example: wait for new files, then process them in parallel batches, each file exactly once.

``ByoNewFilesSensor`` waits (deferred, in the triggerer) until ``example_data/customers/`` holds CSVs
this flow has not processed; ``ByoBatchPlanOperator`` splits the new files into batches; one
mapped ``ByoFlowOperator`` task per batch processes them. The ledger (SQLite under
``$AIRFLOW_HOME/byo`` here, PostgreSQL in production) makes every file land once, even when runs
overlap or a worker dies: a second run finds nothing new and maps no task.

    airflow dags test byo_customers_in_batches
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from airflow_byo.operators.byo_flow import ByoFlowOperator
from airflow_byo.operators.plan_batches import ByoBatchPlanOperator
from airflow_byo.sensors.new_files import ByoNewFilesSensor

EXAMPLES = Path(__file__).resolve().parent.parent  # outside the DAGs folder (README, "Path policy")
SOURCE = str(EXAMPLES / "example_data" / "customers")
DESTINATION = str(
    Path(os.environ.get("BYO_EXAMPLE_OUTPUT", EXAMPLES / "example_output")) / "customers_batched"
)
FLOW_ID = "byo_customers_in_batches.clean"

COUNT_ROWS = """
import csv

def process(file, ctx):
    with file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    ctx.count("records_in", len(rows))
    return {"file": file.name, "rows": len(rows), "columns": list(rows[0]) if rows else []}
"""

with DAG(
    dag_id="byo_customers_in_batches",
    description="Sensor + batch planner + mapped BYO flow tasks over new customer files",
    schedule="@hourly",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["byo", "example"],
):
    wait = ByoNewFilesSensor(
        task_id="wait_for_new_files",
        source=SOURCE,
        include=["*.csv"],
        flow_id=FLOW_ID,
        deferrable=True,
        poke_interval=30,
        timeout=3600,
        soft_fail=True,  # no new file within the hour: skip this run instead of failing it
    )
    plan = ByoBatchPlanOperator(
        task_id="plan_batches", source=SOURCE, include=["*.csv"], flow_id=FLOW_ID, files_per_batch=2
    )
    clean = ByoFlowOperator.partial(
        task_id="clean",
        flow_id=FLOW_ID,
        source=SOURCE,
        include=["*.csv"],
        destination=DESTINATION,
        processor=COUNT_ROWS,
    ).expand(files=plan.output)
    wait >> plan >> clean
