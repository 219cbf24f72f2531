"""
What the New flow form offers: connections (ids, types and descriptions only -- never a host,
login, password or extra), runtimes with their base packages, library functions, frequencies and
their next runs, the local roots, and the spec folder's state.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from airflow_byo.plugins.editor.settings import editor_local_roots, folder_state
from airflow_byo.plugins.editor.validation import FieldError
from airflow_byo.specs.model import FREQUENCIES, ON_NEW_FILES, schedule_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["CONNECTION_TYPES", "FieldProblem", "connections", "editor_options", "schedule_preview"]

#: The connection types a source or destination can use (S3: aws; SFTP: sftp or ssh).
CONNECTION_TYPES = ("aws", "sftp", "ssh")
NEXT_RUNS = 5


class FieldProblem(Exception):
    """Bad input at one field: a 422 with ``{detail, errors: [{field, message, line}]}``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.errors = [FieldError(field, message)]


def _env_connection(value: str) -> tuple[str, str]:
    """(type, description) of an ``AIRFLOW_CONN_*`` value (JSON or URI), nothing else read."""
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            return "", ""
        return str(data.get("conn_type") or ""), str(data.get("description") or "")
    scheme = value.split("://", 1)[0] if "://" in value else ""
    return ("postgres" if scheme == "postgresql" else scheme.replace("-", "_")), ""


def connections(session: Session) -> list[dict[str, Any]]:
    """Connections of :data:`CONNECTION_TYPES`, from the metadata DB and ``AIRFLOW_CONN_*`` variables."""
    from airflow.models.connection import Connection
    from sqlalchemy import select

    found: dict[str, dict[str, Any]] = {}
    for key, value in os.environ.items():
        if key.startswith("AIRFLOW_CONN_"):
            kind, description = _env_connection(value)
            if kind in CONNECTION_TYPES:
                conn_id = key.removeprefix("AIRFLOW_CONN_").lower()
                found[conn_id] = {"conn_id": conn_id, "conn_type": kind, "description": description}
    rows = session.execute(
        select(Connection.conn_id, Connection.conn_type, Connection.description).where(
            Connection.conn_type.in_(CONNECTION_TYPES)
        )
    )
    for row in rows:  # the environment wins, as in Airflow's own lookup
        found.setdefault(row[0], {"conn_id": row[0], "conn_type": row[1], "description": row[2] or ""})
    return sorted(found.values(), key=lambda c: c["conn_id"])


def _runtimes() -> tuple[list[dict[str, Any]], str | None]:
    from airflow_byo.exceptions import ByoError
    from airflow_byo.runtimes_file import available_runtimes

    try:
        runtimes = available_runtimes()
    except ByoError as exc:
        return [], str(exc)
    listed = [
        {
            "name": r.name,
            "description": r.description,
            "packages": [str(p) for p in r.packages],
            "python": r.python,
        }
        for r in runtimes.values()
    ]
    return listed, None


def _functions() -> list[str]:
    from airflow_byo import library

    return [f"{name}@{v}" for name, versions in sorted(library.list_functions().items()) for v in versions]


def frequencies() -> list[dict[str, Any]]:
    """The frequency choices: presets, ``on new files``, cron."""
    presets = [{"value": name, "airflow_schedule": schedule} for name, schedule in FREQUENCIES.items()]
    return [
        *presets,
        {"value": ON_NEW_FILES, "airflow_schedule": None, "event": True},
        {"value": "cron", "airflow_schedule": None, "example": "0 6 * * *"},
    ]


def editor_options(session: Session, user: Any) -> dict[str, Any]:
    """``GET /api/editor/options``."""
    from airflow_byo.exceptions import ByoError
    from airflow_byo.plugins.editor.rights import can_create

    runtimes, runtimes_error = _runtimes()
    try:
        roots, roots_error = editor_local_roots(), None
    except ByoError as exc:
        roots, roots_error = [], str(exc)
    return {
        "connections": connections(session),
        "runtimes": runtimes,
        "runtimes_error": runtimes_error,
        "functions": _functions(),
        "frequencies": frequencies(),
        "local_roots": roots,
        "local_roots_error": roots_error,
        "spec_folder": folder_state().as_dict(),
        "can_create": can_create(user),
    }


def _timezone() -> tzinfo:
    """``[core] default_timezone`` (what Airflow schedules cron DAGs in), UTC if it cannot be read."""
    try:
        from airflow.settings import TIMEZONE

        return TIMEZONE
    except Exception:  # noqa: BLE001 - a preview falls back to UTC
        return UTC


def schedule_preview(value: Any, now: datetime | None = None) -> dict[str, Any]:
    """``POST /api/editor/schedule``: the Airflow schedule of a spec's ``schedule`` and its next runs."""
    if not isinstance(value, str) or not value.strip():
        raise FieldProblem(
            "schedule", f"required: one of {', '.join(FREQUENCIES)}, {ON_NEW_FILES}, a cron or asset:<uri>"
        )
    try:
        schedule = schedule_of(value)
    except ValueError as exc:
        raise FieldProblem("schedule", str(exc)) from None
    if schedule == ON_NEW_FILES:
        return {"airflow_schedule": "an AssetWatcher on the source", "kind": "on new files", "next_runs": []}
    if isinstance(schedule, list):
        return {"airflow_schedule": f"Asset({schedule[0].uri})", "kind": "asset", "next_runs": []}
    if schedule is None or schedule == "@once":
        return {
            "airflow_schedule": schedule,
            "kind": "manual" if schedule is None else "once",
            "next_runs": [],
        }
    from croniter import croniter

    runs = croniter(schedule, (now or datetime.now(UTC)).astimezone(_timezone()))
    return {
        "airflow_schedule": schedule,
        "kind": "cron",
        "next_runs": [runs.get_next(datetime).isoformat() for _ in range(NEXT_RUNS)],
    }
