"""
Real notification servers for one test: an HTTP webhook, an SMTP server (connection ``byo_smtp``)
and a Slack incoming-webhook endpoint (connection ``byo_slack``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.notifications.servers import SmtpServer, WebhookServer


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


#: The token part of the Slack webhook URL (the connection's password); must never be logged.
SLACK_TOKEN = "T0BYO0000/B0BYO0000/" + "x" * 24


@pytest.fixture
def slack(connections: Any) -> Iterator[WebhookServer]:
    """
    An HTTP server standing in for hooks.slack.com; the Slack provider builds the webhook URL
    ``<schema>://<host>/<password>`` from the ``slack_incoming_webhook`` connection.
    """
    server = WebhookServer()
    connections(
        "byo_slack",
        {
            "conn_type": "slack_incoming_webhook",
            "schema": "http",
            "host": f"127.0.0.1:{server.port}/services",
            "password": SLACK_TOKEN,
        },
    )
    yield server
    server.stop()
