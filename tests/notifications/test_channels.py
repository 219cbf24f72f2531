"""ctx.notify() to real channels (HTTP webhook, SMTP, file), flow-event notifiers, and insights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoConfigError, ByoError
from airflow_byo.notifications.channels import parse_channels
from airflow_byo.notifications.notifier import ByoFlowNotifier
from airflow_byo.operators.byo_flow import ByoFlowOperator
from tests.conftest import fresh_ledger_env
from tests.notifications.servers import SmtpServer, WebhookServer
from tests.operators.test_byo_flow import FakeTaskInstance, context
from tests.servers import free_port

NOTIFYING = """
def process(file, ctx):
    ctx.notify("looked at " + file.name)
    ctx.notify("bad rows in " + file.name, level="error", rows=3)
    return "ok"
"""


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.stop()


@pytest.fixture
def smtp(connections: Any) -> Iterator[SmtpServer]:
    server = SmtpServer()
    connections(
        "byo_smtp",
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": server.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "byo@example.com"},
        },
    )
    yield server
    server.stop()


def flow(tmp_path: Path, notifications: list[dict[str, Any]], **kwargs: Any) -> ByoFlowOperator:
    source = tmp_path / "in"
    source.mkdir(exist_ok=True)
    (source / "a.txt").write_text("a")
    return ByoFlowOperator(
        task_id="flow",
        flow_id=f"notify-{uuid.uuid4().hex}",
        source=str(source),
        destination=str(tmp_path / "out"),
        processor=NOTIFYING,
        python_interpreter=sys.executable,
        notifications=notifications,
        runtime_config={"job_config": {"output_format": "text"}},
        **kwargs,
    )


def test_messages_are_routed_by_level_to_webhook_email_and_file(
    tmp_path: Path, webhook: WebhookServer, smtp: SmtpServer, connections: Any
) -> None:
    token = "hook-token-" + uuid.uuid4().hex
    connections("byo_hook", {"conn_type": "http", "password": token, "extra": {"X-Source": "byo"}})
    log_file = tmp_path / "notes" / "notifications.jsonl"
    result = flow(
        tmp_path,
        [
            {"type": "webhook", "url": webhook.url, "conn_id": "byo_hook", "levels": ["warning", "error"]},
            {"type": "email", "to": ["ops@example.com"], "conn_id": "byo_smtp", "levels": ["error"]},
            {"type": "file", "path": str(log_file)},
        ],
    ).execute(context())

    [hook] = webhook.requests  # the info message is not for this channel
    assert hook["json"]["level"] == "error"
    assert hook["json"]["message"] == "bad rows in a.txt"
    assert hook["json"]["fields"] == {"rows": 3}
    assert hook["json"]["file"].endswith("a.txt")
    assert hook["headers"]["Authorization"] == f"Bearer {token}"
    assert hook["headers"]["X-Source"] == "byo"

    [mail] = smtp.messages
    assert mail.rcpt_tos == ["ops@example.com"]
    assert "bad rows in a.txt" in mail.content.decode()

    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [line["message"] for line in lines] == ["looked at a.txt", "bad rows in a.txt"]
    assert result["counters"]["notifications_delivered"] == 4
    assert result["counters"]["notifications_failed"] == 0
    assert token not in json.dumps(result)


def test_a_failing_channel_is_retried_counted_and_does_not_fail_the_flow(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    webhook.status = 500
    task = flow(tmp_path, [{"type": "webhook", "url": webhook.url, "levels": ["error"]}])
    result = task.execute(context())
    assert len(webhook.requests) == 3  # three attempts
    assert result["files_processed"] == 1
    assert result["counters"]["notifications_failed"] == 1


def test_fail_on_notification_error(tmp_path: Path, webhook: WebhookServer) -> None:
    webhook.status = 500
    task = flow(tmp_path, [{"type": "webhook", "url": webhook.url}], fail_on_notification_error=True)
    ctx = context()
    with pytest.raises(ByoError, match=r"2 notification\(s\) could not be delivered"):
        task.execute(ctx)
    assert ctx["ti"].xcom["return_value"]["files_processed"] == 1


def test_bad_channel_definitions_are_named() -> None:
    with pytest.raises(ByoConfigError, match=r"notifications\[0\.webhook\.url\]: Field required"):
        parse_channels([{"type": "webhook"}])
    with pytest.raises(ByoConfigError, match=r"Channel types: webhook, email, slack, file"):
        parse_channels([{"type": "pager"}])


# -- flow-event notifiers -------------------------------------------------------------------------


class _TI(FakeTaskInstance):
    dag_id = "dag"
    task_id = "flow"

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__()
        self.summary = summary

    def xcom_pull(self, task_ids: str) -> dict[str, Any]:
        return self.summary


def test_notifier_renders_the_summary(webhook: WebhookServer) -> None:
    notifier = ByoFlowNotifier(channels=[{"type": "webhook", "url": webhook.url}], event="succeeded")
    notifier.notify(
        {"ti": _TI({"files_processed": 7, "files_failed": 0, "files_quarantined": 1, "records_out": 70})}
    )
    assert webhook.requests[0]["json"]["message"] == (
        "dag.flow: 7 file(s) processed, 0 failed, 1 quarantined, 70 record(s) out"
    )
    ByoFlowNotifier(channels=[{"type": "webhook", "url": webhook.url}], event="quarantined").notify(
        {"ti": _TI({"files_quarantined": 0})}
    )
    assert len(webhook.requests) == 1  # nothing quarantined: nothing said


def test_data_delay_alert(webhook: WebhookServer, ledger_db: dict[str, Any], connections: Any) -> None:
    from airflow_byo.ledger.state import Ledger
    from airflow_byo.storage import SourceFile

    connections("byo_ledger", ledger_db["connection"])
    ledger = Ledger("dag.flow", ledger_db["url"])
    ledger.claim([SourceFile("/a", "a", 1, 1.0)], "run", 60)
    task = type("Task", (), {"flow_id": "dag.flow", "ledger_conn_id": "byo_ledger"})()
    channels = [{"type": "webhook", "url": webhook.url}]
    ByoFlowNotifier(channels=channels, event="data_delay", delay_minutes=60).notify(
        {"ti": _TI({}), "task": task}
    )
    assert webhook.requests == []  # a file arrived a moment ago
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE byo_files SET first_seen = first_seen - 7200")
    ByoFlowNotifier(channels=channels, event="data_delay", delay_minutes=60, level="warning").notify(
        {"ti": _TI({}), "task": task}
    )
    assert webhook.requests[0]["json"]["message"] == "dag.flow: no new file for 120 minutes"
    assert webhook.requests[0]["json"]["level"] == "warning"


# -- insights beyond XCom -------------------------------------------------------------------------


def test_openlineage_datasets_are_the_processed_inputs_and_their_outputs(tmp_path: Path) -> None:
    task = flow(tmp_path, [])
    task.execute(context())
    lineage = task.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(tmp_path / "in" / "a.txt"))]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", str(tmp_path / "out" / "a.txt"))]


def test_metrics_and_asset_event_of_a_real_run(tmp_path: Path, airflow_home: Path, venv_cache: Path) -> None:
    """`airflow dags test` with StatsD pointed at a UDP socket here; then read the Asset event back."""
    received: list[str] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = free_port()
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.2)
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            try:
                received.extend(sock.recv(65535).decode().splitlines())
            except TimeoutError:
                continue

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    env = (
        os.environ
        | fresh_ledger_env(tmp_path)
        | {
            "BYO_EXAMPLE_OUTPUT": str(tmp_path / "output"),
            "AIRFLOW__BYO__VENV_CACHE_PATH": str(venv_cache),
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(port),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        }
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "dags", "test", "byo_decorator_orders"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    time.sleep(0.5)
    stop.set()
    listener.join()
    sock.close()
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    names = {line.split(":")[0] for line in received}
    assert "airflow.byo.files.processed" in names, sorted(names)[:50]
    assert "airflow.byo.bytes.in" in names
    assert "airflow.byo.run.duration" in names

    script = (
        "import json\n"
        "from airflow.models.asset import AssetEvent, AssetModel\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as session:\n"
        "    asset = session.query(AssetModel).filter(AssetModel.uri.like('%orders_by_sku%')).one()\n"
        "    event = session.query(AssetEvent).filter(AssetEvent.asset_id == asset.id)"
        ".order_by(AssetEvent.id.desc()).first()\n"
        "    print(json.dumps(event.extra))\n"
    )
    extra = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert extra.returncode == 0, extra.stderr[-2000:]
    summary = json.loads(extra.stdout.strip().splitlines()[-1])
    assert summary["files_processed"] == 2
    assert summary["destination"] == str(tmp_path / "output" / "orders_by_sku")
    assert "files" not in summary  # compact: counts and insights, no per-file list


def test_slack_without_the_slack_provider_is_a_clear_counted_failure() -> None:
    import importlib.util

    if importlib.util.find_spec("airflow.providers.slack") is not None:
        pytest.skip("the Slack provider is installed here")
    from airflow_byo.notifications.channels import Notification, NotificationRouter
    from tests.conftest import RecordingLogger

    log = RecordingLogger()
    router = NotificationRouter(parse_channels([{"type": "slack", "conn_id": "slack"}]), log, retry_delay=0)
    router.submit(Notification(level="error", message="boom"))
    router.close()
    assert router.failed == 1
    assert "pip install apache-airflow-providers-slack" in log.text
    assert "Notification not delivered after 3 attempts" in log.text
