"""
ByoFlowNotifier: flow events -> notification channels, as an Airflow notifier.

Use it as a task callback::

    ByoFlowOperator(...,
        on_success_callback=ByoFlowNotifier(channels=[...], event="succeeded"),
        on_failure_callback=ByoFlowNotifier(channels=[...], event="failed", level="error"),
    )

Events: ``succeeded`` (with the run summary), ``failed``, ``quarantined`` (only when the run
quarantined files), ``data_delay`` (only when no new file arrived for ``delay_minutes``).
``message`` is a Jinja template that sees ``summary`` (the run summary), ``flow``, ``event`` and
the task context, e.g. ``"{{ flow }}: {{ summary.files_processed }} file(s) processed"``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.common.compat.sdk import BaseNotifier

from airflow_byo.notifications.channels import Notification, NotificationRouter, parse_channels

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["ByoFlowNotifier"]

Event = Literal["succeeded", "failed", "quarantined", "data_delay"]

DEFAULT_MESSAGES: dict[str, str] = {
    "succeeded": "{{ flow }}: {{ summary.files_processed }} file(s) processed, "
    "{{ summary.files_failed }} failed, {{ summary.files_quarantined }} quarantined, "
    "{{ summary.records_out or 0 }} record(s) out",
    "failed": "{{ flow }} failed: {{ exception }}",
    "quarantined": "{{ flow }}: {{ summary.files_quarantined }} file(s) quarantined",
    "data_delay": "{{ flow }}: no new file for {{ minutes_since_last_file }} minutes",
}


class ByoFlowNotifier(BaseNotifier):
    """
    Send a flow event to notification channels.

    :param channels: channel definitions, as the operator's ``notifications``.
    :param event: which event this notifier reports.
    :param message: Jinja template of the message (a sensible default per event).
    :param level: the message's level (routes it to the channels that take that level).
    :param delay_minutes: for ``data_delay``: alert when the last new file is older than this.
    """

    def __init__(
        self,
        *,
        channels: list[dict[str, Any]],
        event: Event = "succeeded",
        message: str | None = None,
        level: str = "info",
        delay_minutes: float | None = None,
    ) -> None:
        super().__init__()
        self.channels = parse_channels(channels)
        self.event = event
        self.message = message or DEFAULT_MESSAGES[event]
        self.level = level
        self.delay_minutes = delay_minutes
        if event == "data_delay" and not delay_minutes:
            from airflow_byo.exceptions import ByoConfigError

            raise ByoConfigError("event 'data_delay' needs delay_minutes, e.g. delay_minutes=120")

    def notify(self, context: Context) -> None:
        ti = context["ti"]
        task = context.get("task")
        summary = ti.xcom_pull(task_ids=ti.task_id) or {}
        flow = getattr(task, "flow_id", None) or f"{ti.dag_id}.{ti.task_id}"
        variables: dict[str, Any] = {"summary": summary, "flow": flow, "event": self.event}
        if self.event == "quarantined" and not summary.get("files_quarantined"):
            return
        if self.event == "data_delay":
            minutes = self._minutes_since_last_file(task, flow)
            if minutes is None or minutes < (self.delay_minutes or 0):
                return
            variables["minutes_since_last_file"] = round(minutes)
        from jinja2.sandbox import SandboxedEnvironment

        text = SandboxedEnvironment().from_string(self.message).render(**context, **variables)
        router = NotificationRouter(self.channels, self.log)
        router.submit(Notification(level=self.level, message=text, flow=flow, fields={"event": self.event}))
        router.close()

    @staticmethod
    def _minutes_since_last_file(task: Any, flow: str) -> float | None:
        """Minutes since the flow last saw a new file, from its ledger (None: never saw one)."""
        from airflow_byo.ledger.state import Ledger

        last = Ledger.of(flow, getattr(task, "ledger_conn_id", None)).last_seen()
        return None if last is None else (time.time() - last) / 60
