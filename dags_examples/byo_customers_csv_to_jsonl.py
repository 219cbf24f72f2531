"""
Example BYO flow: clean customer CSV exports into JSON Lines.

Reads every ``*.csv`` in ``example_data/customers/`` beside the DAGs folder, cleans each row with
the function below (run in its own virtualenv with the pinned ``Unidecode`` package) and writes one
``<name>.jsonl`` per input to ``example_output/customers/`` (or ``$BYO_EXAMPLE_OUTPUT``). Both are
outside the DAGs folder on purpose: a flow may not read or write the platform's own folders
(README, "Path policy").

Run it end to end::

    ./dev example

Try the function on one file without writing anything::

    airflow tasks test byo_customers_csv_to_jsonl clean_customers \\
        -t '{"test_file": "example_data/customers/customers_2024-05-01.csv"}'
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param

from airflow_byo.operators.byo_flow import ByoFlowOperator

EXAMPLES = Path(__file__).resolve().parent.parent  # the DAGs folder's parent: not a platform folder
SOURCE = EXAMPLES / "example_data" / "customers"
DESTINATION = Path(os.environ.get("BYO_EXAMPLE_OUTPUT", EXAMPLES / "example_output")) / "customers"


def clean_customers(file, ctx, *, default_country="NL"):
    """
    Turn one CSV export into clean customer records.

    The function runs in a separate process inside the flow's virtualenv, so it imports what it
    needs itself. Rows without a usable e-mail are dropped and counted; the rest are yielded as
    records, which the flow writes as JSON Lines.
    """
    import csv
    from datetime import datetime as dt

    from unidecode import unidecode  # pinned in `packages`; not installed in the Airflow worker

    def parse_date(text):
        for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%Y-%m-%dT%H:%M:%S"):
            try:
                return dt.strptime(text.strip(), fmt).date().isoformat()
            except ValueError:
                continue
        return None

    kept = rejected = 0
    with file.open(newline="") as handle:
        for row in csv.DictReader(handle):
            ctx.count("records_in")
            email = (row.get("email") or "").strip().lower()
            if email.count("@") != 1:
                rejected += 1
                ctx.log.warning(
                    "%s: customer %s has no valid e-mail (%r); dropped", file.name, row["id"], email
                )
                continue
            name = " ".join(row["name"].split())
            kept += 1
            yield {
                "customer_id": int(row["id"]),
                "name": name,
                "name_ascii": unidecode(name),
                "email": email,
                "country": (row.get("country") or "").strip().upper() or default_country,
                "signup_date": parse_date(row.get("signup_date") or ""),
                "source_system": ctx.variables.get("source_system"),
                "source_file": file.name,
            }
    ctx.count("rejected", rejected)
    if rejected:
        ctx.notify(f"{file.name}: {rejected} customer(s) dropped without a valid e-mail", level="warning")
    ctx.insight("last_file", {"name": file.name, "kept": kept, "rejected": rejected})


with DAG(
    dag_id="byo_customers_csv_to_jsonl",
    description="Clean customer CSV exports into JSON Lines with a BYO function",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["byo", "example"],
    params={
        "test_file": Param(
            None,
            type=["null", "string"],
            description="Path of one sample file: run the function on it, preview, write nothing.",
        )
    },
):
    ByoFlowOperator(
        task_id="clean_customers",
        source=str(SOURCE),
        include=["*.csv"],
        destination=str(DESTINATION),
        processor=clean_customers,
        packages="unidecode==1.3.8",
        runtime_config={
            "custom_code": {"kwargs": {"default_country": "NL"}},
            "job_config": {"timeout_seconds": 60, "error_policy": "continue"},
            "source_system": "crm-export",
        },
    )
