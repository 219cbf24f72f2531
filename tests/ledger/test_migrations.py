"""
The ledger survives upgrades (issue 13 point 7): a ledger in the released layout (version 1: the
tables of airflow-byo 0.1.0, no version table) is upgraded in place with every row intact; a
ledger newer than the code is refused before anything is written; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    inspect,
    select,
    text,
)

from airflow_byo.ledger.database import engine, open_ledger
from airflow_byo.ledger.migrations import LEDGER_VERSION, LedgerVersionError, ledger_version
from airflow_byo.ledger.schema import runs, versions
from airflow_byo.ledger.snapshots import load_snapshot
from airflow_byo.ledger.state import Ledger
from tests.ledger.conftest import files

# -- the released layout, version 1, as airflow-byo 0.1.0 created it (frozen: never edit) --------

V1 = MetaData()
V1_FILES = Table(
    "byo_files",
    V1,
    Column("flow_id", String(250), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("fingerprint", String(200), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_by", String(64)),
    Column("lease_until", Float),
    Column("size", BigInteger),
    Column("mtime", Float),
    Column("outputs", Text),
    Column("error", Text),
    Column("first_seen", Float, nullable=False),
    Column("updated", Float, nullable=False),
)
Index("byo_files_flow_state", V1_FILES.c.flow_id, V1_FILES.c.state)
Index("byo_files_flow_updated", V1_FILES.c.flow_id, V1_FILES.c.updated)
V1_EVENTS = Table(
    "byo_events",
    V1,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow_id", String(250), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("fingerprint", String(200), nullable=False),
    Column("event", String(30), nullable=False),
    Column("at", Float, nullable=False),
    Column("details", Text),
)
Index("byo_events_flow_path", V1_EVENTS.c.flow_id, V1_EVENTS.c.path)
V1_SNAPSHOTS = Table(
    "byo_snapshots",
    V1,
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

FLOW = "dag.task"
DONE_ROWS = 1200  # more than one statement's chunk


def released_ledger(url: str) -> None:
    """A version 1 ledger with rows in every table, written without airflow-byo's code."""
    raw = create_engine(url)
    with raw.begin() as connection:
        V1.create_all(connection)
        connection.execute(
            insert(V1_FILES),
            [
                {
                    "flow_id": FLOW,
                    "path": f"f{i:04d}.csv",
                    "fingerprint": f"size:10:mtime:{1000.0:.6f}",
                    "state": "done",
                    "attempts": 1,
                    "outputs": json.dumps([f"f{i:04d}.jsonl"]),
                    "size": 10,
                    "mtime": 1000.0,
                    "first_seen": 1.0e9 + i,
                    "updated": 1.0e9 + i,
                }
                for i in range(DONE_ROWS)
            ],
        )
        connection.execute(
            insert(V1_FILES),
            [
                {
                    "flow_id": FLOW,
                    "path": "bad.csv",
                    "fingerprint": "etag:abc",
                    "state": "quarantined",
                    "attempts": 3,
                    "error": "ValueError: no header",
                    "size": 7,
                    "first_seen": 1.0e9,
                    "updated": 1.0e9,
                }
            ],
        )
        connection.execute(
            insert(V1_EVENTS),
            [
                {
                    "flow_id": FLOW,
                    "path": "f0000.csv",
                    "fingerprint": "x",
                    "event": e,
                    "at": 1.0e9,
                    "details": d,
                }
                for e, d in (("claimed", '{"by": "run-1"}'), ("done", '{"outputs": ["f0000.jsonl"]}'))
            ],
        )
        connection.execute(
            insert(V1_SNAPSHOTS),
            [
                {
                    "snapshot_id": "snap1",
                    "position": i,
                    "flow_id": FLOW,
                    "url": f"/src/n{i}.csv",
                    "path": f"n{i}.csv",
                    "size": 5,
                    "mtime": 2.0,
                    "created": 1.0e9,
                }
                for i in range(3)
            ],
        )
    raw.dispose()


def layout(url: str) -> dict[str, Any]:
    """Every table's columns (name, type, nullable), primary key and indexes, as the database has them."""
    raw = create_engine(url)
    with raw.connect() as connection:
        found = inspect(connection)
        result = {
            table: {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
                "primary_key": found.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted((i["name"], tuple(i["column_names"])) for i in found.get_indexes(table)),
            }
            for table in sorted(found.get_table_names())
        }
    raw.dispose()
    return result


def version_rows(url: str) -> list[int]:
    raw = create_engine(url)
    with raw.connect() as connection:
        rows = [
            int(v)
            for v in connection.execute(select(versions.c.version).order_by(versions.c.version)).scalars()
        ]
    raw.dispose()
    return rows


def test_a_released_ledger_is_upgraded_in_place_with_every_row_intact(ledger_db: dict[str, Any]) -> None:
    url = ledger_db["url"]
    released_ledger(url)
    ledger = Ledger(FLOW, url)  # the new code opens it
    assert ledger.counts() == {"done": DONE_ROWS, "quarantined": 1}
    records = {r["path"]: r for r in ledger.records()}
    assert json.loads(records["f0042.csv"]["outputs"]) == ["f0042.jsonl"]
    assert records["bad.csv"]["error"] == "ValueError: no header"
    assert records["bad.csv"]["attempts"] == 3
    assert [e["event"] for e in ledger.history("f0000.csv")] == ["claimed", "done"]
    assert [f.relative_path for f in load_snapshot(ledger, "snap1")] == ["n0.csv", "n1.csv", "n2.csv"]
    # the old rows still do their job: done files are not new, a new one is
    listing = files("f0001.csv", "f0002.csv", "new.csv")
    assert [f.relative_path for f in ledger.new_files(listing)] == ["new.csv"]
    # and the new table is there and usable
    assert "byo_runs" in inspect(ledger.engine).get_table_names()
    with ledger.engine.begin() as connection:
        connection.execute(
            insert(runs).values(token="t", flow_id=FLOW, host="h", process_scope="s", pid=1, started=1.0)
        )
    assert version_rows(url) == list(range(2, LEDGER_VERSION + 1))


def test_an_upgraded_ledger_has_the_layout_of_a_new_one(ledger_db: dict[str, Any], tmp_path: Any) -> None:
    url = ledger_db["url"]
    released_ledger(url)
    open_ledger(url).dispose()
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    if url.startswith("postgresql"):  # compare like with like: a second database on the server
        fresh = _second_postgres_database(url)
    open_ledger(fresh).dispose()
    assert layout(url) == layout(fresh)
    assert version_rows(fresh) == [LEDGER_VERSION]


def _second_postgres_database(url: str) -> str:
    import psycopg2

    name = url.rsplit("/", 1)[1] + "_fresh"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(autouse=True)
def _drop_second_database(ledger_db: dict[str, Any]) -> Any:
    yield
    if ledger_db["url"].startswith("postgresql"):
        import psycopg2

        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
        admin.autocommit = True
        name = ledger_db["url"].rsplit("/", 1)[1] + "_fresh"
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_workers_opening_a_released_ledger_together_upgrade_it_once(ledger_db: dict[str, Any]) -> None:
    url = ledger_db["url"]
    released_ledger(url)
    errors: list[Exception] = []
    start = threading.Barrier(4)

    def open_it() -> None:
        start.wait()
        try:
            open_ledger(url).dispose()  # a new engine each: four workers, not one cached engine
        except Exception as exc:  # noqa: BLE001 -- collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert version_rows(url) == list(range(2, LEDGER_VERSION + 1))
    assert Ledger(FLOW, url).counts() == {"done": DONE_ROWS, "quarantined": 1}


def test_a_ledger_newer_than_the_code_is_refused_and_left_untouched(ledger_db: dict[str, Any]) -> None:
    url = ledger_db["url"]
    released_ledger(url)
    open_ledger(url).dispose()
    raw = create_engine(url)
    with raw.begin() as connection:
        connection.execute(
            insert(versions).values(version=LEDGER_VERSION + 1, applied=1.7e9, release="9.9.0")
        )
    raw.dispose()
    before = layout(url)
    shown = url
    if url.startswith("postgresql"):  # trust auth ignores the password; the message must hide it
        url = url.replace("postgres@", "postgres:s3cret@")
        shown = url.replace(":s3cret@", ":***@")
    with pytest.raises(LedgerVersionError) as raised:
        Ledger(FLOW, url)
    assert str(raised.value) == (
        f"the ledger {shown} has schema version {LEDGER_VERSION + 1} (upgraded by airflow-byo 9.9.0 at "
        f"2023-11-14T22:13:20+00:00), but this airflow-byo 0.1.0 knows versions up to {LEDGER_VERSION}; "
        "nothing was written to it. Install the airflow-byo release that upgraded it here too (every "
        "scheduler, worker and api-server sharing a ledger must run the same release), or point [byo] "
        "ledger_conn_id at another ledger"
    )
    assert "s3cret" not in str(raised.value)
    assert layout(url) == before
    assert version_rows(url) == [*range(2, LEDGER_VERSION + 1), LEDGER_VERSION + 1]
    with pytest.raises(LedgerVersionError):
        engine(url)  # not cached as if it had worked: refused every time


def test_the_refusal_never_shows_the_password() -> None:
    from airflow_byo.ledger.migrations import safe_url

    assert safe_url("postgresql+psycopg2://byo:s3cret@db.example:5432/ledger") == (
        "postgresql+psycopg2://byo:***@db.example:5432/ledger"
    )


def test_a_new_database_gets_the_current_version(ledger_db: dict[str, Any]) -> None:
    ledger = Ledger(FLOW, ledger_db["url"])
    with ledger.engine.connect() as connection:
        assert ledger_version(connection) == LEDGER_VERSION
        assert connection.execute(text("SELECT count(*) FROM byo_files")).scalar() == 0
    assert version_rows(ledger_db["url"]) == [LEDGER_VERSION]
