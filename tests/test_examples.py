"""Every example DAG imports cleanly and runs end to end with `airflow dags test` (SQLite)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, fresh_ledger_env
from tests.conftest import run_airflow as airflow
from tests.servers import S3Server, SftpServer

EXAMPLES = ROOT / "dags_examples"
CUSTOMERS = ROOT / "example_data" / "customers"

pytestmark = pytest.mark.slow


@pytest.fixture
def example_env(airflow_home: Path, venv_cache: Path, tmp_path: Path) -> dict[str, str]:
    return (
        os.environ
        | fresh_ledger_env(tmp_path)
        | {
            "BYO_EXAMPLE_OUTPUT": str(tmp_path / "output"),
            "AIRFLOW__BYO__VENV_CACHE_PATH": str(venv_cache),
        }
    )


def test_every_example_dag_imports_without_errors() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    assert "byo_customers_csv_to_jsonl" in bag.dag_ids
    for dag in bag.dags.values():
        assert dag.tasks, f"{dag.dag_id} has no tasks"


def test_customers_example_runs_end_to_end(example_env: dict[str, str], tmp_path: Path) -> None:
    result = airflow("dags", "test", "byo_customers_csv_to_jsonl", env=example_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = tmp_path / "output" / "customers"
    assert sorted(p.name for p in output.iterdir()) == [
        "customers_2024-05-01.jsonl",
        "customers_2024-05-02.jsonl",
        "customers_2024-05-03.jsonl",
    ]
    records = [json.loads(line) for line in (output / "customers_2024-05-01.jsonl").read_text().splitlines()]
    assert [r["customer_id"] for r in records] == [1, 2, 4]  # customer 3 has no e-mail
    # name_ascii comes from unidecode, pinned in the flow's packages and absent from this worker.
    assert records[0] | {"source_file": None} == {
        "customer_id": 1,
        "name": "Zoë Müller",
        "name_ascii": "Zoe Muller",
        "email": "zoe.mueller@example.com",
        "country": "DE",
        "signup_date": "2024-05-01",
        "source_system": "crm-export",
        "source_file": None,
    }
    assert records[2]["country"] == "NL"  # default_country from custom_code.kwargs
    assert importlib.util.find_spec("unidecode") is None
    log = result.stdout + result.stderr
    assert "files seen / processed / failed / skipped  3 / 3 / 0 / 0" in log
    assert "counter rejected" in log


def test_customers_example_test_mode_previews_and_writes_nothing(
    example_env: dict[str, str], tmp_path: Path
) -> None:
    sample = CUSTOMERS / "customers_2024-05-02.csv"
    result = airflow(
        "tasks",
        "test",
        "byo_customers_csv_to_jsonl",
        "clean_customers",
        "-t",
        json.dumps({"test_file": str(sample)}),
        env=example_env,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "Output customers_2024-05-02.jsonl" in log
    # The preview is a table of the first records: the transliterated name is in its row.
    assert re.search(r"\| François Dupont +\| Francois Dupont +\|", log), log[-3000:]
    assert "BYO flow test run" in log
    assert not (tmp_path / "output").exists()


def test_sftp_orders_to_s3_example_runs_against_real_servers(
    example_env: dict[str, str], s3_server: S3Server, sftp_server: SftpServer
) -> None:
    bucket = f"byo-orders-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    upload = sftp_server.root / f"upload-{uuid.uuid4().hex[:8]}" / "orders"
    shutil.copytree(ROOT / "example_data" / "orders", upload)
    sftp_server.give(upload.parent)
    env = example_env | {
        "AIRFLOW_CONN_BYO_SFTP": json.dumps(sftp_server.connection(auth="key")),
        "AIRFLOW_CONN_BYO_S3": json.dumps(s3_server.connection()),
        "BYO_ORDERS_SOURCE": f"sftp://{upload}",
        "BYO_ORDERS_DESTINATION": f"s3://{bucket}/orders",
    }
    result = airflow("dags", "test", "byo_sftp_orders_to_s3", env=env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    client = s3_server.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["orders/orders_2024-05-01.jsonl", "orders/orders_2024-05-02.jsonl"]
    body = client.get_object(Bucket=bucket, Key="orders/orders_2024-05-01.jsonl")["Body"].read().decode()
    records = [json.loads(line) for line in body.splitlines()]
    assert [r["order_id"] for r in records] == [1001, 1002, 1003]  # 1004 has no quantity
    assert records[0]["total"] == "30.25"  # 2 x 12.50 + 21 % VAT
    assert records[2]["total"] == "30.00"  # USD: no VAT
    assert "counter invalid_lines" in log
    _, secret = s3_server.keys["admin"]
    assert secret not in log
    assert sftp_server.private_key.splitlines()[1] not in log


def test_batched_example_maps_over_new_files_once(example_env: dict[str, str], tmp_path: Path) -> None:
    result = airflow("dags", "test", "byo_customers_in_batches", env=example_env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    output = tmp_path / "output" / "customers_batched"
    names = sorted(p.name for p in output.iterdir())
    assert names == ["customers_2024-05-01.jsonl", "customers_2024-05-02.jsonl", "customers_2024-05-03.jsonl"]
    assert json.loads((output / "customers_2024-05-01.jsonl").read_text())["rows"] == 4
    assert "3 new file(s) of 3 listed, in 2 batch(es)" in log


def test_decorator_example_runs(example_env: dict[str, str], tmp_path: Path) -> None:
    result = airflow("dags", "test", "byo_decorator_orders", env=example_env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    output = tmp_path / "output" / "orders_by_sku"
    first = [
        json.loads(line) for line in (output / "orders_2024-05-01.by_sku.jsonl").read_text().splitlines()
    ]
    assert first == [
        {"sku": "BOOK-001", "quantity": 2, "revenue": 25.0},
        {"sku": "PEN-010", "quantity": 10, "revenue": 12.0},
    ]  # the USD order and the one without a quantity are left out: currency="EUR" reached the function


def test_spec_factory_example_runs(example_env: dict[str, str]) -> None:
    output = ROOT / "example_output" / "spec_customers"  # the spec's relative destination
    shutil.rmtree(output, ignore_errors=True)
    try:
        result = airflow("dags", "test", "byo_spec_customers", env=example_env)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert sorted(p.name for p in output.iterdir()) == [
            "customers_2024-05-01.jsonl",
            "customers_2024-05-02.jsonl",
            "customers_2024-05-03.jsonl",
        ]
    finally:
        shutil.rmtree(output, ignore_errors=True)
