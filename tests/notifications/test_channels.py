"""ctx.notify() to real channels (airflow_byo.notifications.channels): HTTP webhook, SMTP, file, Slack."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoConfigError, ByoError
from airflow_byo.notifications.channels import parse_channels
from airflow_byo.operators.byo_flow import ByoFlowOperator
from tests.conftest import RecordingLogger, context
from tests.notifications.conftest import SLACK_TOKEN
from tests.notifications.servers import SmtpServer, WebhookServer

NOTIFYING = """
def process(file, ctx):
    ctx.notify("looked at " + file.name)
    ctx.notify("bad rows in " + file.name, level="error", rows=3)
    return "ok"
"""


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


def test_messages_are_routed_by_level_to_webhook_email_slack_and_file(
    tmp_path: Path, webhook: WebhookServer, smtp: SmtpServer, slack: WebhookServer, connections: Any
) -> None:
    token = "hook-token-" + uuid.uuid4().hex
    connections("byo_hook", {"conn_type": "http", "password": token, "extra": {"X-Source": "byo"}})
    log_file = tmp_path / "notes" / "notifications.jsonl"
    result = flow(
        tmp_path,
        [
            {"type": "webhook", "url": webhook.url, "conn_id": "byo_hook", "levels": ["warning", "error"]},
            {"type": "email", "to": ["ops@example.com"], "conn_id": "byo_smtp", "levels": ["error"]},
            {"type": "slack", "conn_id": "byo_slack", "levels": ["error"]},
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

    [post] = slack.requests  # through the Slack provider's webhook notifier
    assert post["path"] == f"/services/{SLACK_TOKEN}"
    assert post["json"]["text"].startswith("*ERROR* ")
    assert post["json"]["text"].endswith(": bad rows in a.txt")

    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [line["message"] for line in lines] == ["looked at a.txt", "bad rows in a.txt"]
    assert result["counters"]["notifications_delivered"] == 5
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


def _route(channels: list[dict[str, Any]], *messages: str) -> tuple[Any, RecordingLogger]:
    from airflow_byo.notifications.channels import Notification, NotificationRouter

    log = RecordingLogger()
    router = NotificationRouter(parse_channels(channels), log, retry_delay=0)
    for message in messages:
        router.submit(Notification(level="error", message=message, flow="orders"))
    router.close()
    return router, log


def test_slack_messages_are_posted_to_the_connections_webhook(slack: WebhookServer) -> None:
    router, _ = _route([{"type": "slack", "conn_id": "byo_slack"}], "boom", "again")
    assert [r["json"]["text"] for r in slack.requests] == ["*ERROR* orders: boom", "*ERROR* orders: again"]
    assert {r["path"] for r in slack.requests} == {f"/services/{SLACK_TOKEN}"}
    assert {r["headers"]["Content-Type"] for r in slack.requests} == {"application/json;charset=utf-8"}
    assert (router.delivered, router.failed) == (2, 0)


def test_slack_answering_an_error_is_retried_and_counted(slack: WebhookServer) -> None:
    """The provider raises AirflowException for a non-200 answer: counted, the next message still goes."""
    slack.status = 500
    router, log = _route([{"type": "slack", "conn_id": "byo_slack"}], "boom", "again")
    assert len(slack.requests) == 6  # three attempts per message
    assert (router.delivered, router.failed) == (0, 2)
    assert "Notification not delivered after 3 attempts: slack byo_slack: AirflowException" in log.text
    assert "Status Code: 500" in log.text
    assert SLACK_TOKEN not in log.text


def test_slack_without_the_slack_provider_is_a_clear_counted_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    # The provider is installed for the tests: make its import fail as on a worker without it.
    monkeypatch.setitem(sys.modules, "airflow.providers.slack.notifications.slack_webhook", None)
    router, log = _route([{"type": "slack", "conn_id": "slack"}], "boom")
    assert router.failed == 1
    assert (
        "slack slack: ByoConfigError: a slack channel needs the Slack provider: "
        "pip install apache-airflow-providers-slack" in log.text
    )
    assert "Notification not delivered after 3 attempts" in log.text
