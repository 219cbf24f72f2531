"""
Example BYO flow between two servers: order CSVs on an SFTP server -> JSON Lines in an S3 bucket.

The function is given as inline code (the "provide your own function" text box). Credentials come
from two Airflow connections, ``byo_sftp`` and ``byo_s3`` (an S3-compatible store through the
connection's ``endpoint_url`` extra works the same). ``docker-compose.yaml`` defines both, with an
SFTP server and MinIO, so ``docker compose up`` runs this flow against real servers; the tests run
it against OpenSSH ``sshd`` and moto's S3 server.

Where the files are can be changed without editing the DAG: ``BYO_ORDERS_SOURCE`` (default
``sftp:///upload/orders``) and ``BYO_ORDERS_DESTINATION`` (default ``s3://byo-data/orders``).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_byo.operators.byo_flow import ByoFlowOperator

ORDERS_TO_JSONL = '''
import csv
from decimal import Decimal, InvalidOperation


def process(file, ctx, *, vat_rates):
    """One JSON record per valid order line, with its total incl. VAT; bad lines are counted."""
    with file.open(newline="") as handle:
        for line in csv.DictReader(handle):
            ctx.count("records_in")
            try:
                quantity = int(line["quantity"])
                unit_price = Decimal(line["unit_price"])
            except (ValueError, InvalidOperation):
                ctx.count("invalid_lines")
                ctx.log.warning("%s: order %s has no usable quantity/price", file.name, line["order_id"])
                continue
            rate = Decimal(str(vat_rates.get(line["currency"], 0)))
            net = quantity * unit_price
            yield {
                "order_id": int(line["order_id"]),
                "customer_id": int(line["customer_id"]),
                "sku": line["sku"],
                "quantity": quantity,
                "net": str(net),
                "total": str((net * (1 + rate)).quantize(Decimal("0.01"))),
                "currency": line["currency"],
                "region": ctx.variables["region"],
            }
'''

with DAG(
    dag_id="byo_sftp_orders_to_s3",
    description="Order CSVs from an SFTP server to JSON Lines in S3, through a BYO function",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["byo", "example", "sftp", "s3"],
    params={"test_file": Param(None, type=["null", "string"], description="Run on one sample file only.")},
):
    ByoFlowOperator(
        task_id="orders_to_jsonl",
        source=os.environ.get("BYO_ORDERS_SOURCE", "sftp:///upload/orders"),
        source_conn_id="byo_sftp",
        include=["orders_*.csv"],
        destination=os.environ.get("BYO_ORDERS_DESTINATION", "s3://byo-data/orders"),
        destination_conn_id="byo_s3",
        processor=ORDERS_TO_JSONL,
        runtime_config={
            "custom_code": {"kwargs": {"vat_rates": {"EUR": 0.21, "USD": 0.0}}},
            "job_config": {"timeout_seconds": 120, "transfer_concurrency": 4},
            "region": "eu-west",
        },
    )
