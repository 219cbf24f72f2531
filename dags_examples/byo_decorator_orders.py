"""
Example: the TaskFlow style. ``@task.byo`` makes the decorated function the flow's processor;
the call's arguments become its ``custom_code`` arguments.

    airflow dags test byo_decorator_orders
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, task

EXAMPLES = Path(__file__).resolve().parent.parent  # outside the DAGs folder (README, "Path policy")
OUTPUT = Path(os.environ.get("BYO_EXAMPLE_OUTPUT", EXAMPLES / "example_output")) / "orders_by_sku"


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["byo", "example"])
def byo_decorator_orders():
    @task.byo(
        source=str(EXAMPLES / "example_data" / "orders"),
        include=["*.csv"],
        destination=str(OUTPUT),
        runtime_config={"job_config": {"output_name": "{stem}.by_sku.{ext}"}},
    )
    def totals_by_sku(file, ctx, currency):
        """Quantity and revenue per SKU for one day of orders, in one currency."""
        import csv
        from collections import defaultdict

        totals = defaultdict(lambda: {"quantity": 0, "revenue": 0.0})
        with file.open(newline="") as handle:
            for line in csv.DictReader(handle):
                if line["currency"] != currency or not line["quantity"]:
                    continue
                totals[line["sku"]]["quantity"] += int(line["quantity"])
                totals[line["sku"]]["revenue"] += int(line["quantity"]) * float(line["unit_price"])
        ctx.insight("skus", len(totals))
        return [{"sku": sku, **values} for sku, values in sorted(totals.items())]

    totals_by_sku(currency="EUR")


byo_decorator_orders()
