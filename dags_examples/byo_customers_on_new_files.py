"""
Example event-driven BYO flow: each customer CSV export becomes JSON Lines within seconds of
landing, with no schedule and no sensor (docs/event-driven.md).

The DAG is scheduled on an Asset whose watcher runs in the triggerer: it lists the landing folder
every 5 seconds (``poll_interval``) and, when files the flow has not processed appear, records an
Asset event, which queues a run. The run processes every unprocessed file; nothing holds a worker
slot while no file comes. It watches ``example_data/customers/`` beside the DAGs
folder (or ``$BYO_EXAMPLE_LANDING``); unpause it with a triggerer running, then copy a CSV file in::

    airflow dags unpause byo_customers_on_new_files
    cp example_data/customers/customers_2024-05-01.csv "$BYO_EXAMPLE_LANDING/new.csv"

The watcher and the flow read the same source: one dict of arguments is passed to both.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from airflow_byo import new_files_asset
from airflow_byo.operators.byo_flow import ByoFlowOperator

EXAMPLES = Path(__file__).resolve().parent.parent  # outside the DAGs folder (README, "Path policy")
LANDING = os.environ.get("BYO_EXAMPLE_LANDING", str(EXAMPLES / "example_data" / "customers"))
DESTINATION = (
    Path(os.environ.get("BYO_EXAMPLE_OUTPUT", EXAMPLES / "example_output")) / "customers_on_new_files"
)
FLOW_ID = "byo_customers_on_new_files.to_jsonl"
SOURCE = {"source": LANDING, "include": ["*.csv"]}

TO_JSONL = """
import csv

def process(file, ctx):
    with file.open(newline="") as handle:
        for row in csv.DictReader(handle):
            ctx.count("records_in")
            yield {"customer_id": int(row["id"]), "email": row["email"].strip().lower()}
"""

with DAG(
    dag_id="byo_customers_on_new_files",
    description="Customer CSV exports to JSON Lines as soon as they land",
    schedule=[new_files_asset(flow_id=FLOW_ID, **SOURCE)],
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["byo", "example", "event-driven"],
):
    ByoFlowOperator(
        task_id="to_jsonl",
        flow_id=FLOW_ID,
        destination=str(DESTINATION),
        processor=TO_JSONL,
        **SOURCE,
    )
