"""Real notification servers for one test: an HTTP webhook and an SMTP server (connection ``byo_smtp``)."""

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
