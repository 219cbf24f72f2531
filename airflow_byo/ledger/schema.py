"""
The ledger's tables (SQLAlchemy Core), identical on SQLite and PostgreSQL.

``byo_files`` holds one row per file identity (flow, path, fingerprint); its primary key is what
makes a claim atomic: two workers inserting the same identity cannot both succeed.
``byo_events`` is the append-only history behind ``airflow byo ledger history``.
``byo_snapshots`` holds file lists handed from a sensor or a planning task to the flow, so XCom
carries a snapshot id rather than megabytes of paths.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

#: States of a file identity.
CLAIMED, DONE, FAILED, QUARANTINED = "claimed", "done", "failed", "quarantined"

files = Table(
    "byo_files",
    metadata,
    Column("flow_id", String(250), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("fingerprint", String(200), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_by", String(64)),
    Column("lease_until", Float),
    Column("size", BigInteger),
    Column("mtime", Float),
    Column("outputs", Text),  # JSON list of output names
    Column("error", Text),
    Column("first_seen", Float, nullable=False),
    Column("updated", Float, nullable=False),
)
Index("byo_files_flow_state", files.c.flow_id, files.c.state)
Index("byo_files_flow_updated", files.c.flow_id, files.c.updated)

events = Table(
    "byo_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow_id", String(250), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("fingerprint", String(200), nullable=False),
    Column("event", String(30), nullable=False),
    Column("at", Float, nullable=False),
    Column("details", Text),
)
Index("byo_events_flow_path", events.c.flow_id, events.c.path)

snapshots = Table(
    "byo_snapshots",
    metadata,
    Column("snapshot_id", String(64), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("flow_id", String(250), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime", Float),
    Column("etag", String(200)),
    Column("created", Float, nullable=False),
)
