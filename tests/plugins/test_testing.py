"""The Test button's engine: file confinement, limits, errors with the user's line, a real run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.plugins.flows import Flow
from airflow_byo.plugins.testing import (
    MAX_TEST_SECONDS,
    CaptureLog,
    TestRequest,
    error_line,
    resolve_test_file,
    run_test,
    timeout_message,
)
from airflow_byo.plugins.trial_queue import QUEUE

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


def _run(
    flow: Flow, code: str, test_file: str = "orders_2024-05-01.csv", *, queue: dict | None = None, **kwargs
) -> dict:
    """Test ``code`` (``queue``: run_test's user and wait; by default until done)."""
    request = TestRequest(code=code, function_name="process", test_file=test_file, **kwargs)
    for _ in range(600):  # the first test builds the (empty) environment
        result = run_test(flow, request, **(queue or {}))
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
    assert too_slow["error"].startswith("Timeout: processing took longer than job_config.timeout_seconds=1 s")
    assert "raise job_config.timeout_seconds" in too_slow["error"], too_slow
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


def test_a_file_the_flows_filters_drop_is_refused_naming_the_filter(tmp_path):
    for name, size in (("a.csv", 10), ("a.txt", 10), ("tmp_a.csv", 10), ("small.csv", 2), ("big.csv", 99)):
        (tmp_path / name).write_bytes(b"x" * size)
    os.utime(tmp_path / "a.csv", (1_700_000_000, 1_700_000_000))
    settings = {"source": str(tmp_path), "include": ["*.csv"], "exclude": ["tmp_*"]}
    flow = Flow("d", "flow", "operator", settings, {})
    with pytest.raises(
        ByoConfigError, match=r"never processes 'a.txt': the flow's include filter \['\*.csv'\]"
    ):
        resolve_test_file(flow, "a.txt")
    with pytest.raises(ByoConfigError, match=r"the flow's exclude filter \['tmp_\*'\] matches it"):
        resolve_test_file(flow, "tmp_a.csv")
    sized = Flow("d", "flow", "operator", settings | {"min_size": 5, "max_size": 50}, {})
    with pytest.raises(ByoConfigError, match="it is 2 bytes, under the flow's min_size=5"):
        resolve_test_file(sized, "small.csv")
    with pytest.raises(ByoConfigError, match="it is 99 bytes, over the flow's max_size=50"):
        resolve_test_file(sized, "big.csv")
    recent = Flow("d", "flow", "operator", settings | {"modified_after": "2024-01-01T00:00:00"}, {})
    with pytest.raises(ByoConfigError, match="modified 2023-11-14T22:13:20\\+00:00, not after the flow's"):
        resolve_test_file(recent, "a.csv")
    assert resolve_test_file(sized, "a.csv") == str(tmp_path / "a.csv")
    remote = Flow("r", "f", "operator", {"source": "s3://bucket/in", "include": ["*.csv"]}, {})
    with pytest.raises(ByoConfigError, match="include filter"):
        resolve_test_file(remote, "notes/a.txt")
    assert resolve_test_file(remote, "2024/a.csv") == "s3://bucket/in/2024/a.csv"


def test_the_log_keeps_its_head_and_tail_and_says_how_many_lines_it_dropped():
    log = CaptureLog()
    for number in range(260):
        log.info("line %d", number)
    lines = [line["message"] for line in log.lines]
    assert log.dropped == 60
    assert lines[:150] == [f"line {n}" for n in range(150)]
    assert lines[150] == "[... 60 lines dropped: the Test keeps the first 150 and the last 50 of 260 lines]"
    assert lines[151:] == [f"line {n}" for n in range(210, 260)]
    short = CaptureLog()
    short.info("only")
    assert ([line["message"] for line in short.lines], short.dropped) == (["only"], 0)


def test_the_timeout_hint_names_the_test_buttons_cap_or_the_flows_own_timeout():
    capped = timeout_message(300)
    assert f"the Test button stops a function after {MAX_TEST_SECONDS:g} s" in capped
    assert "flow runs use job_config.timeout_seconds=300 s" in capped
    assert "raise" not in capped
    own = timeout_message(5)
    assert "raise job_config.timeout_seconds" in own
    assert f"the Test button stops at {MAX_TEST_SECONDS:g} s" in own


ENDLESS = "import time\ndef process(file, ctx):\n    ctx.log.info('started')\n    time.sleep(3600)\n"


def _started(flow: Flow, code: str, user: str) -> dict:
    """A Test handed to the queue (after its environment is ready), not waited for."""
    return _run(flow, code, queue={"user": user, "wait": 0.2})


@pytest.mark.venv
def test_a_users_second_test_waits_for_the_first_and_cancel_kills_it(flow):
    first = _started(flow, ENDLESS, "alice")
    assert first["state"] == "running", first
    second = _started(flow, CODE, "alice")
    assert (second["state"], second["position"]) == ("queued", 1), second
    someone_else = _run(flow, CODE)  # another user is not held up by alice's endless Test
    assert someone_else["ok"], someone_else
    cancelled = QUEUE.cancel(QUEUE.get(first["test_id"]), by="alice")
    if cancelled["state"] != "cancelled":
        cancelled = QUEUE.answer(QUEUE.get(first["test_id"]), wait=None)
    assert cancelled["state"] == "cancelled", cancelled
    assert "Test cancelled by alice after" in cancelled["error"]
    assert "its process was killed" in cancelled["error"]
    done = QUEUE.answer(QUEUE.get(second["test_id"]), wait=None)
    assert done["ok"], done
    assert done["insights"]["rows"] >= 1
