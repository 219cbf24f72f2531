"""Flow-event notifiers (airflow_byo.notifications.notifier): run summaries and data-delay alerts."""

from __future__ import annotations

from typing import Any

from airflow_byo.notifications.notifier import ByoFlowNotifier
from tests.conftest import FakeTaskInstance
from tests.notifications.conftest import SLACK_TOKEN
from tests.notifications.servers import WebhookServer


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


def test_notifier_tells_slack_a_run_failed(slack: WebhookServer) -> None:
    notifier = ByoFlowNotifier(
        channels=[{"type": "slack", "conn_id": "byo_slack", "levels": ["error"]}],
        event="failed",
        level="error",
    )
    notifier.notify({"ti": _TI({}), "exception": "3 of 5 file(s) failed"})
    [post] = slack.requests
    assert post["path"] == f"/services/{SLACK_TOKEN}"
    assert post["json"]["text"] == "*ERROR* dag.flow: dag.flow failed: 3 of 5 file(s) failed"


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
