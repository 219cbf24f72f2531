"""
The ledger's schema version, and its upgrade in place: a deployment never loses its record of
processed files to an upgrade of airflow-byo.

Version 1 is the layout airflow-byo 0.1.0 created (``byo_files``, ``byo_events``,
``byo_snapshots``, and no version table). Each later version is one function in :data:`STEPS`
that takes a ledger at the version before it to its own, spelling out the tables and columns
it adds: a step never uses the current tables of :mod:`~airflow_byo.ledger.schema` (they move
on; the step must not). A new database gets the current layout at once.

:func:`upgrade` runs once per process when the ledger's engine is created, inside the
transaction that holds the ledger's lock (the PostgreSQL advisory lock; SQLite's write lock),
so workers starting together upgrade it once, and a step that fails leaves it as it was. A
ledger newer than this code is refused before anything is written to it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, func, insert, inspect, select
from sqlalchemy.engine import make_url

from airflow_byo import __version__
from airflow_byo.exceptions import ByoConfigError
from airflow_byo.ledger.schema import files, metadata, versions

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Connection

__all__ = ["LEDGER_VERSION", "STEPS", "LedgerVersionError", "ledger_version", "safe_url", "upgrade"]


class LedgerVersionError(ByoConfigError):
    """The ledger was upgraded by a newer airflow-byo than the one installed here."""


def _v2_runs(connection: Connection) -> None:
    """Version 2 (issue 13): ``byo_runs``, who holds a claim token, to tell dead runs from live."""
    # The table as version 2 made it, repeated from schema.py on purpose: a migration step must
    # keep creating what its version had, whatever schema.py says later.
    layout = MetaData()
    runs = Table(
        "byo_runs",
        layout,
        Column("token", String(64), primary_key=True),
        Column("flow_id", String(250), nullable=False),
        Column("host", String(255), nullable=False),
        Column("process_scope", String(200), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("process_started", Float),
        Column("dag_id", String(250)),
        Column("run_id", String(250)),
        Column("task_id", String(250)),
        Column("map_index", Integer),
        Column("try_number", Integer),
        Column("started", Float, nullable=False),
    )
    Index("byo_runs_started", runs.c.started)
    Table(
        "byo_ledger_version",
        layout,
        Column("version", Integer, primary_key=True),
        Column("applied", Float, nullable=False),
        Column("release", String(50), nullable=False),
    )
    layout.create_all(connection)


#: ``STEPS[i]`` upgrades a ledger from version ``i + 1`` to ``i + 2``. Append, never edit.
STEPS: list[Callable[[Connection], None]] = [_v2_runs]

#: The schema version this code reads and writes.
LEDGER_VERSION = len(STEPS) + 1


def safe_url(url: str) -> str:
    """The ledger's URL as it may be shown: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def ledger_version(connection: Connection) -> int | None:
    """The schema version of the ledger behind ``connection``; ``None`` for an empty database."""
    tables = set(inspect(connection).get_table_names())
    if versions.name in tables:
        return int(connection.execute(select(func.max(versions.c.version))).scalar() or 1)
    return 1 if files.name in tables else None


def upgrade(connection: Connection, url: str) -> int:
    """
    Bring the ledger to :data:`LEDGER_VERSION` (create it when the database is empty); return
    the version it was at. Call it holding the ledger's lock, in one transaction.

    :raises LedgerVersionError: the ledger is newer than this code (nothing is written then).
    """
    found = ledger_version(connection)
    if found is None:
        metadata.create_all(connection)
        _record(connection, LEDGER_VERSION)
        return LEDGER_VERSION
    if found > LEDGER_VERSION:
        raise LedgerVersionError(_too_new(connection, url, found))
    for version in range(found + 1, LEDGER_VERSION + 1):
        STEPS[version - 2](connection)
        _record(connection, version)
    return found


def _record(connection: Connection, version: int) -> None:
    connection.execute(insert(versions).values(version=version, applied=time.time(), release=__version__))


def _too_new(connection: Connection, url: str, found: int) -> str:
    row = connection.execute(
        select(versions.c.release, versions.c.applied).where(versions.c.version == found)
    ).first()
    by = (
        f" (upgraded by airflow-byo {row.release} at "
        f"{datetime.fromtimestamp(row.applied, UTC).isoformat(timespec='seconds')})"
        if row
        else ""
    )
    return (
        f"the ledger {safe_url(url)} has schema version {found}{by}, but this airflow-byo "
        f"{__version__} knows versions up to {LEDGER_VERSION}; nothing was written to it. Install the "
        "airflow-byo release that upgraded it here too (every scheduler, worker and api-server sharing "
        "a ledger must run the same release), or point [byo] ledger_conn_id at another ledger"
    )
