"""
The ledger's tables (SQLAlchemy Core), identical on SQLite and PostgreSQL.

``byo_files`` holds one row per file identity (flow, path, fingerprint); its primary key is what
makes a claim atomic: two workers inserting the same identity cannot both succeed.
``byo_events`` is the append-only history behind ``airflow byo ledger history``.
``byo_snapshots`` holds file lists handed from a sensor or a planning task to the flow, so XCom
carries a snapshot id rather than megabytes of paths.
``byo_runs`` says who holds a claim token (host, process, Airflow task instance), so a run that
finds files claimed by another can tell whether that run is still alive.
``byo_ledger_version`` records the schema version, one row per upgrade (see
:mod:`airflow_byo.ledger.migrations`): a change here needs a migration step there.
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

runs = Table(
    "byo_runs",
    metadata,
    Column("token", String(64), primary_key=True),  # byo_files.claimed_by
    Column("flow_id", String(250), nullable=False),
    Column("host", String(255), nullable=False),
    # Where ``pid`` means something: boot id and PID namespace (containers sharing a hostname
    # do not share PIDs), so a PID is only compared with one from the same scope.
    Column("process_scope", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("process_started", Float),  # the process's start time: a reused PID has another
    Column("dag_id", String(250)),
    Column("run_id", String(250)),
    Column("task_id", String(250)),
    Column("map_index", Integer),
    Column("try_number", Integer),
    Column("started", Float, nullable=False),
)
Index("byo_runs_started", runs.c.started)

versions = Table(
    "byo_ledger_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied", Float, nullable=False),
    Column("release", String(50), nullable=False),  # the airflow-byo release that applied it
)
