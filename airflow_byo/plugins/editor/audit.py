"""
The flow editor's rows in Airflow's audit log (``airflow.models.log.Log``, what the UI's Audit Log
and ``GET /api/v2/eventLogs`` show): ``byo.flow.save``, ``byo.flow.delete``, ``byo.flow.revert``,
with the user as owner, the flow as ``dag_id``, and in ``extra`` the file, the content hashes and
the git commit -- never the spec's content.

Activating and pausing go through Airflow's own ``PATCH /api/v2/dags/{dag_id}``, which writes
its own row.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["EVENTS", "audit"]

EVENTS = {
    "create": "byo.flow.save",
    "save": "byo.flow.save",
    "revert": "byo.flow.revert",
    "delete": "byo.flow.delete",
}


def audit(session: Session, action: str, *, user: Any, name: str, **extra: Any) -> None:
    """Add and commit one audit row for ``action`` (create, save, revert, delete) of flow ``name``."""
    from airflow.models.log import Log

    session.add(
        Log(
            event=EVENTS[action],
            owner=user.get_name(),
            owner_display_name=user.get_name(),
            dag_id=name,
            extra=json.dumps({"action": action, **extra}, default=str),
        )
    )
    session.commit()
