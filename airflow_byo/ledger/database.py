"""
The ledger's database: its SQLAlchemy URL from an Airflow connection, one engine per URL (tables
created, or upgraded in place, on first use), and the dialect details that keep SQLite and
PostgreSQL behaving alike.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, create_engine, event

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.ledger.migrations import upgrade
from airflow_byo.provider_config import byo_home, setting

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sqlalchemy.engine import Connection, Engine

__all__ = ["chunks", "engine", "insert_ignore", "ledger_url", "open_ledger"]

_CHUNK = 500  # rows per statement when writing many


def ledger_url(conn_id: str | None = None) -> str:
    """
    The SQLAlchemy URL of the ledger: connection ``conn_id`` (or ``[byo] ledger_conn_id``), else
    a SQLite file at ``$AIRFLOW_HOME/byo/ledger.db``.
    """
    conn_id = conn_id or setting("ledger_conn_id") or None
    if conn_id is None:
        path = byo_home("ledger.db")
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    from airflow_byo.connections import get_connection

    connection = get_connection(conn_id, "the ledger")
    kind = (connection.conn_type or "").lower()
    if kind == "sqlite":
        return f"sqlite:///{connection.host}"
    if kind in ("postgres", "postgresql"):
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg2",
            username=connection.login,
            password=connection.password,
            host=connection.host,
            port=connection.port,
            database=connection.schema,
        ).render_as_string(hide_password=False)
    raise ByoConfigError(
        f"ledger connection {conn_id!r} has type {kind!r}: use a 'postgres' connection (shared by all "
        "workers) or 'sqlite' (one machine)"
    )


@cache
def engine(url: str) -> Engine:
    """The engine of the ledger at ``url``, its schema created or upgraded (once per process)."""
    return open_ledger(url)


def open_ledger(url: str) -> Engine:
    """
    A new engine for ``url`` after bringing the ledger to this code's schema version.

    :raises LedgerVersionError: the ledger is newer than this code.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        # Writers take the lock when a transaction begins (BEGIN IMMEDIATE), so concurrent
        # processes queue on the busy timeout instead of failing to upgrade a read lock.
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            # No fsync per commit (WAL's NORMAL): a commit survives any crash of a process, and
            # a power cut can lose only the last ones -- files that are then processed again
            # and their outputs republished under the same names, so nothing is lost or doubled.
            # fsync per commit cost ~5 ms each, a third of a light file's ledger time.
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            dbapi_connection.execute("PRAGMA busy_timeout=60000")

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        # UPDATEs of many rows (claims taking back failed files, settles) go in pages of 100
        # statements per round trip; by default psycopg2 sends one per row, and with a few ms
        # per round trip that was most of the worker-side cost of a light file.
        engine = create_engine(url, pool_pre_ping=True, executemany_mode="values_plus_batch")
    try:
        with engine.begin() as connection:  # on SQLite, BEGIN IMMEDIATE: the write lock
            if engine.dialect.name == "postgresql":
                # Workers starting together must not race to create or upgrade the tables.
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(70790318)")
            upgrade(connection, url)
    except Exception:
        engine.dispose()
        raise
    return engine


def insert_ignore(engine: Engine, table: Table) -> Any:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
