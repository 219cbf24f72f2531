"""
Notification channels: where ``ctx.notify()`` messages and flow events go.

A flow lists its channels (operator ``notifications=``, or ``notifications:`` in a flow spec)::

    [{"type": "webhook", "url": "http://hooks.example/byo", "conn_id": "hook_auth", "levels": ["error"]},
     {"type": "email", "to": ["data@example.com"], "conn_id": "smtp_default", "levels": ["error"]},
     {"type": "slack", "conn_id": "slack_webhook", "levels": ["error"]},
     {"type": "file", "path": "/var/log/byo/notifications.jsonl"}]

Delivery happens in the worker, never in the child (which holds no credentials). A channel that
fails is retried, then the failure is logged and counted; it fails the flow only when the flow
sets ``fail_on_notification_error``.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import urllib.request
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from airflow_byo.exceptions import ByoConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_byo.runner.child_process import TaskLog
    from airflow_byo.runtime.protocol import Notify

__all__ = ["LEVELS", "Notification", "NotificationRouter", "parse_channels"]

Level = Literal["debug", "info", "warning", "error"]
LEVELS = ("debug", "info", "warning", "error")
_ALL_LEVELS: list[Level] = ["info", "warning", "error"]


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    levels: list[Level] = Field(default_factory=lambda: list(_ALL_LEVELS), description="Levels sent here.")

    def send(self, message: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def label(self) -> str:
        return str(getattr(self, "type", "channel"))


class WebhookChannel(_Channel):
    """JSON POST; an ``http`` connection's password becomes a bearer token, its extras headers."""

    type: Literal["webhook"]
    url: str = Field(description="Where to POST the JSON message.")
    conn_id: str | None = Field(
        None, description="Connection with the auth header (password) and extra headers."
    )
    timeout_seconds: float = Field(10, gt=0)

    def send(self, message: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/json"}
        if self.conn_id:
            from airflow_byo.connections import get_connection

            connection = get_connection(self.conn_id, f"webhook {self.url}")
            if connection.password:
                headers["Authorization"] = f"Bearer {connection.password}"
            headers.update({str(k): str(v) for k, v in (connection.extra_dejson or {}).items()})
        request = urllib.request.Request(
            self.url, data=json.dumps(message, default=str).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
            response.read()

    @property
    def label(self) -> str:
        return f"webhook {self.url}"


class EmailChannel(_Channel):
    """An e-mail through an SMTP connection (the smtp provider's hook)."""

    type: Literal["email"]
    to: list[str] = Field(min_length=1, description="Recipients.")
    conn_id: str = Field("smtp_default", description="The SMTP connection.")
    from_email: str | None = Field(None, description="Sender (default: the connection's from_email extra).")

    def send(self, message: dict[str, Any]) -> None:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        subject = f"[{message['level'].upper()}] {message.get('flow', 'BYO flow')}: {message['message']}"[
            :200
        ]
        body = "<pre>" + json.dumps(message, indent=2, default=str) + "</pre>"
        with SmtpHook(smtp_conn_id=self.conn_id) as hook:
            hook.send_email_smtp(to=self.to, subject=subject, html_content=body, from_email=self.from_email)

    @property
    def label(self) -> str:
        return f"email to {', '.join(self.to)}"


class SlackChannel(_Channel):
    """A Slack message through the Slack provider's incoming-webhook notifier."""

    type: Literal["slack"]
    conn_id: str = Field(description="A slack_incoming_webhook connection.")

    def send(self, message: dict[str, Any]) -> None:
        try:
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
        except ImportError:
            raise ByoConfigError(
                "a slack channel needs the Slack provider: pip install apache-airflow-providers-slack"
            ) from None
        text = f"*{message['level'].upper()}* {message.get('flow', '')}: {message['message']}"
        SlackWebhookNotifier(slack_webhook_conn_id=self.conn_id, text=text).notify({})

    @property
    def label(self) -> str:
        return f"slack {self.conn_id}"


class FileChannel(_Channel):
    """JSON Lines appended to a local file (one line per message)."""

    type: Literal["file"]
    path: str = Field(description="Local file the messages are appended to.")

    def send(self, message: dict[str, Any]) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(message, default=str) + "\n")

    @property
    def label(self) -> str:
        return f"file {self.path}"


Channel = Annotated[WebhookChannel | EmailChannel | SlackChannel | FileChannel, Field(discriminator="type")]
_CHANNELS = TypeAdapter(list[Channel])


def parse_channels(value: Any, source: str = "notifications") -> list[Any]:
    """Validate a list of channel definitions; errors name the channel index and field."""
    if not value:
        return []
    try:
        return list(_CHANNELS.validate_python(value))
    except ValidationError as exc:
        problems = "; ".join(
            f"{source}[{'.'.join(str(p) for p in e['loc'])}]: {e['msg']}" for e in exc.errors()
        )
        raise ByoConfigError(
            f"invalid notification channels: {problems}. Channel types: webhook, email, slack, file"
        ) from None


class Notification(BaseModel):
    """One message: from ``ctx.notify()`` (with the file) or a flow event."""

    level: Level = "info"
    message: str
    flow: str = ""
    file: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    at: float = Field(default_factory=time.time)


class NotificationRouter:
    """
    Delivers messages to the channels whose levels include them, in a background thread so a
    slow channel never holds up the files. Retries each delivery, then logs and counts failures.

    :param channels: parsed channels (:func:`parse_channels`).
    :param log: the task's logger.
    :param attempts: deliveries tried per message and channel.
    """

    def __init__(
        self, channels: list[Any], log: TaskLog, *, attempts: int = 3, retry_delay: float = 1.0
    ) -> None:
        self.channels = channels
        self.log = log
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[Notification | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="byo-notify", daemon=True)
        self._thread.start()

    def submit(self, notification: Notification) -> None:
        self._queue.put(notification)

    def child_notifications(self, flow: str) -> Callable[[str, Notify], None]:
        """A runner's ``on_notify``: each ``ctx.notify()`` of the function, for the channels."""

        def submit(url: str, event: Notify) -> None:
            level = event["level"] if event["level"] in LEVELS else "info"
            self.submit(
                Notification(
                    level=level,
                    message=event["message"],
                    fields=event["fields"],
                    file=url,
                    flow=flow,
                )
            )

        return submit

    def _work(self) -> None:
        while (notification := self._queue.get()) is not None:
            message = notification.model_dump()
            for channel in self.channels:
                if notification.level in channel.levels:
                    self._deliver(channel, message)

    def _deliver(self, channel: Any, message: dict[str, Any]) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                channel.send(message)
                self.delivered += 1
                return
            except Exception as exc:  # noqa: BLE001 -- retried, then counted: never ends the thread
                # (the Slack provider answers a non-200 with AirflowException, no OSError)
                error = f"{channel.label}: {type(exc).__name__}: {exc}"
                if attempt < self.attempts:
                    time.sleep(self.retry_delay * attempt)
                    continue
                self.failed += 1
                self.log.warning("Notification not delivered after %d attempts: %s", self.attempts, error)

    def close(self) -> None:
        """Deliver what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()
