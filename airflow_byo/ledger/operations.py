"""
Ledger operations for people: inspect, reset, reprocess, rewind, replay quarantined files.

The same functions back the ``airflow byo ledger ...`` commands. ``flow_id`` is the flow's name
in the ledger (``<dag_id>.<task_id>`` unless the operator sets ``flow_id``); ``conn_id`` picks the
ledger database as the operator's ``ledger_conn_id`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_byo.ledger.schema import FAILED, QUARANTINED
from airflow_byo.ledger.store import Ledger, ledger_url
from airflow_byo.storage import parse_datetime

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["history", "quarantined", "replay", "reprocess", "reset", "rewind", "status"]


def _ledger(flow_id: str, conn_id: str | None) -> Ledger:
    return Ledger(flow_id, ledger_url(conn_id))


def status(flow_id: str, conn_id: str | None = None) -> dict[str, int]:
    """Number of files per state (``done``, ``failed``, ``quarantined``, ``claimed``)."""
    return _ledger(flow_id, conn_id).counts()


def history(flow_id: str, path: str, conn_id: str | None = None) -> list[dict[str, Any]]:
    """Every event of one file (path relative to the source), oldest first."""
    return _ledger(flow_id, conn_id).history(path)


def quarantined(flow_id: str, conn_id: str | None = None) -> list[dict[str, Any]]:
    """The quarantined (and failed) files with their last error."""
    return _ledger(flow_id, conn_id).records([QUARANTINED, FAILED])


def reset(flow_id: str, conn_id: str | None = None) -> int:
    """Forget everything: the next run processes every file of the source again."""
    return _ledger(flow_id, conn_id).forget(reason="reset")


def reprocess(flow_id: str, pattern: str, conn_id: str | None = None) -> int:
    """Process the files matching ``pattern`` (a glob on the relative path) again."""
    return _ledger(flow_id, conn_id).forget(pattern=pattern, reason=f"reprocess {pattern}")


def rewind(flow_id: str, since: datetime | str, conn_id: str | None = None) -> int:
    """Process again every file settled at or after ``since`` (datetime or ISO string)."""
    moment = parse_datetime(since, "since")
    assert moment is not None
    return _ledger(flow_id, conn_id).forget(
        since=moment.timestamp(), reason=f"rewind to {moment.isoformat()}"
    )


def replay(flow_id: str, pattern: str | None = None, conn_id: str | None = None) -> int:
    """After fixing the function: process the quarantined files (matching ``pattern``) again."""
    return _ledger(flow_id, conn_id).forget(pattern=pattern, states=[QUARANTINED], reason="replay")
