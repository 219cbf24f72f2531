"""The Test button's engine: file confinement, limits, errors with the user's line, a real run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.plugins.flows import Flow
from airflow_byo.plugins.testing import TestRequest, error_line, resolve_test_file, run_test

ORDERS = Path(__file__).resolve().parents[2] / "example_data" / "orders"
CODE = """
import csv

def process(file, ctx, currency="EUR"):
    with file.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["currency"] == currency]
    ctx.insight("rows", len(rows))
    ctx.notify(f"{file.name}: {len(rows)} rows", level="info")
    return [{"sku": r["sku"], "quantity": r["quantity"]} for r in rows]
"""


@pytest.fixture
def flow() -> Flow:
    return Flow("orders", "flow", "operator", {"source": str(ORDERS), "include": ["*.csv"]}, {})


def test_only_files_of_the_flows_source_can_be_tested(flow, tmp_path):
    assert resolve_test_file(flow, "orders_2024-05-01.csv") == str(ORDERS / "orders_2024-05-01.csv")
    assert resolve_test_file(flow, str(ORDERS / "orders_2024-05-01.csv")).endswith("orders_2024-05-01.csv")
    for outside in ("/etc/passwd", "../customers/customers_2024-05-01.csv", str(ORDERS)):
        with pytest.raises(ByoConfigError, match="not a file of the flow's source"):
            resolve_test_file(flow, outside)
    with pytest.raises(ByoConfigError, match="does not exist"):
        resolve_test_file(flow, "missing.csv")
    remote = Flow("r", "f", "operator", {"source": "s3://bucket/in", "source_conn_id": "aws"}, {})
    assert resolve_test_file(remote, "a.csv") == "s3://bucket/in/a.csv"
    with pytest.raises(ByoConfigError):
        resolve_test_file(remote, "s3://other/a.csv")


def test_error_line_is_the_last_line_named():
    assert error_line("invalid syntax (line 4)") == 4
    assert (
        error_line('File "<processor>", line 2, in <module>\n  File "<processor>", line 7, in process') == 7
    )
    assert error_line("no line here") is None


def _run(flow: Flow, code: str, test_file: str = "orders_2024-05-01.csv", **kwargs) -> dict:
    request = TestRequest(code=code, function_name="process", test_file=test_file, **kwargs)
    for _ in range(600):  # the first test builds the (empty) environment
        result = run_test(flow, request)
        if result.get("state") != "building":
            return result
        time.sleep(0.5)
    raise AssertionError("environment never ready")


@pytest.mark.venv
def test_a_test_previews_outputs_insights_and_notifications(flow):
    result = _run(flow, CODE, runtime_config={"custom_code": {"kwargs": {"currency": "EUR"}}})
    assert result["ok"], result
    (preview,) = result["previews"]
    assert preview["lines"]
    assert '"sku"' in preview["lines"][0]
    # the page's table (byo.js draws columns x rows): the same engine as `airflow byo test`
    assert (preview["format"], preview["columns"]) == ("jsonl", ["sku", "quantity"])
    assert len(preview["rows"]) == min(preview["records"], 20)
    assert preview["rows"][0][0] == json.loads(preview["lines"][0])["sku"]
    assert result["insights"]["rows"] == preview["records"]
    assert result["notifications"][0]["message"].startswith("orders_2024-05-01.csv: ")
    assert result["packages"] == []
    warm = _run(flow, CODE)  # (how fast a warm test is: measured, not asserted -- see the README)
    assert warm["ok"]


@pytest.mark.venv
def test_errors_name_the_users_line(flow):
    syntax = _run(flow, "def process(file, ctx):\n    x = (\n    return 1\n")
    assert not syntax["ok"], syntax
    assert syntax["error_line"] in (2, 3), syntax
    runtime = _run(flow, "def process(file, ctx):\n    x = 1\n    raise ValueError('boom')\n")
    assert not runtime["ok"], runtime
    assert "boom" in runtime["error"], runtime
    assert runtime["error_line"] == 3, runtime
    bad_packages = _run(flow, CODE, packages="pandas===,x")
    assert not bad_packages["ok"], bad_packages
    assert "pandas" in bad_packages["error"], bad_packages
    too_slow = _run(
        flow,
        "import time\ndef process(file, ctx):\n    time.sleep(30)\n",
        runtime_config={"job_config": {"timeout_seconds": 1}},
    )
    assert not too_slow["ok"], too_slow
    assert "timeout" in too_slow["error"].lower(), too_slow
    assert os.path.exists(ORDERS / "orders_2024-05-01.csv")


def test_without_a_working_sandbox_the_test_button_refuses_to_run_code(flow, monkeypatch):
    from airflow_byo.runner import sandbox_mode

    monkeypatch.setattr(
        sandbox_mode, "bubblewrap_status", lambda: (False, "bubblewrap (bwrap) is not installed: x")
    )
    result = run_test(
        flow, TestRequest(code=CODE, function_name="process", test_file="orders_2024-05-01.csv")
    )
    assert not result["ok"]
    assert "runs pasted code only in the sandbox" in result["error"]
    assert "bubblewrap (bwrap) is not installed" in result["error"]
