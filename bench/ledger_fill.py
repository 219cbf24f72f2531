"""
Ledgers of 10,000 to 10,000,000 recorded files for L3/L4 (``bench/ledger_10m.py``), filled once in
bulk and reused: SQLite files under ``bench/.work/ledger-scale/``, PostgreSQL databases
``byo_bench_ledger_<n>`` on 127.0.0.1:5432 (left in place, like the SQLite files; drop them with
``DROP DATABASE``). A ledger is refilled only when its marker (layout version and row count) differs.

What a ledger of ``n`` holds, as ``n`` runs would have left it: one ``done`` row per file and its
two events (``claimed``, ``done``), in ``byo_files``/``byo_events`` as the code creates them (the
ledger is opened once through :class:`~airflow_byo.ledger.state.Ledger`, which makes the schema).
From 1,000,000 up, the first 999,900 identities are the files of the local source
:func:`listing_source` makes (1,000,000 files of 1 byte with fixed mtimes in 100 folders), so a
listing of it finds exactly 100 new files; the rest are archived paths never listed again.

Filling: SQLite through its own ``executemany`` (journal off during the fill, then WAL as the
ledger uses it), PostgreSQL with ``COPY ... FROM STDIN`` then ``ANALYZE``; rows in primary-key
order, so every index grows at its right edge.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FLOW_ID", "LISTED", "NEW", "drop_pg", "listing_source", "pg_up", "pg_url", "sqlite_url"]

FLOW_ID = "bench.scale"
LISTED, NEW, FOLDERS = 1_000_000, 100, 100
_LAYOUT = 1  # bump when what a ledger holds changes: every ledger is refilled
_BASE_MTIME = 1_700_000_000
_BATCH = 200_000


# -- the identities ----------------------------------------------------------------------------
def _listed(count: int = LISTED) -> Iterator[tuple[str, int, float, bool]]:
    """(relative path, size, mtime, recorded) of the source's files, in path order."""
    per_folder = count // FOLDERS
    for folder in range(FOLDERS):
        for index in range(per_folder):
            number = folder * per_folder + index
            # the last file of each folder is the new one: 100 new files spread over the listing
            yield (
                f"d{folder:02d}/f{number:07d}.csv",
                1,
                float(_BASE_MTIME + number // 1000),
                index < per_folder - 1,
            )


def _identities(recorded: int, listed: int) -> Iterator[tuple[str, int, float]]:
    """
    The ``recorded`` identities of a ledger, in path order: archived paths, then -- when the
    ledger is that large -- the listed files but the new ones.
    """
    known = listed - NEW if recorded >= listed - NEW else 0
    for number in range(recorded - known):
        yield f"archive/a{number // 10_000:05d}/f{number:08d}.csv", 1, float(_BASE_MTIME - 86_400)
    if known:
        yield from ((path, size, mtime) for path, size, mtime, done in _listed(listed) if done)


def listing_source(workdir: Path, listed: int = LISTED) -> Path:
    """The local source L3 lists: ``listed`` files of 1 byte in 100 folders, mtimes fixed (kept)."""
    root = workdir / f"ledger-source-{listed}"
    marker = workdir / f"ledger-source-{listed}.complete"  # beside it: the listing is the files alone
    if marker.exists():
        return root
    for path, _, mtime, _ in _listed(listed):
        full = root / path
        if not full.parent.exists():
            full.parent.mkdir(parents=True)
        full.write_bytes(b"x")
        os.utime(full, (mtime, mtime))
    marker.write_text("ok")
    return root


def _fingerprint(size: int, mtime: float) -> str:
    """:func:`airflow_byo.ledger.state.fingerprint` of a file without an ETag."""
    return f"size:{size}:mtime:{mtime:.6f}"


def _file_rows(recorded: int, listed: int) -> Iterator[tuple[object, ...]]:
    now = time.time()
    for path, size, mtime in _identities(recorded, listed):
        outputs = json.dumps([path.rsplit("/", 1)[-1].replace(".csv", ".jsonl")])
        yield (FLOW_ID, path, _fingerprint(size, mtime), "done", 1, size, mtime, outputs, now, now)


def _event_rows(recorded: int, listed: int) -> Iterator[tuple[object, ...]]:
    now = time.time()
    for path, size, mtime in _identities(recorded, listed):
        fingerprint = _fingerprint(size, mtime)
        yield (FLOW_ID, path, fingerprint, "claimed", now, '{"by": "bench-fill"}')
        yield (FLOW_ID, path, fingerprint, "done", now, '{"outputs": []}')


_FILE_COLUMNS = "flow_id, path, fingerprint, state, attempts, size, mtime, outputs, first_seen, updated"
_EVENT_COLUMNS = "flow_id, path, fingerprint, event, at, details"


# -- SQLite ------------------------------------------------------------------------------------
def sqlite_url(workdir: Path, recorded: int, listed: int = LISTED) -> str:
    """A SQLite ledger of ``recorded`` files (filled now unless it is already)."""
    from airflow_byo.ledger.state import Ledger

    folder = workdir / "ledger-scale"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sqlite-{recorded}.db"
    marker = path.with_suffix(".json")
    wanted = {"layout": _LAYOUT, "recorded": recorded, "listed": listed}
    url = f"sqlite:///{path}"
    if marker.exists() and json.loads(marker.read_text()) == wanted and path.exists():
        return url
    for stale in folder.glob(f"sqlite-{recorded}.db*"):
        stale.unlink()
    Ledger(FLOW_ID, url).engine.dispose()  # the schema, as the code creates it
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-1000000")
        connection.execute("BEGIN")
        connection.executemany(
            f"INSERT INTO byo_files ({_FILE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            _file_rows(recorded, listed),
        )
        connection.executemany(
            f"INSERT INTO byo_events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?)", _event_rows(recorded, listed)
        )
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    marker.write_text(json.dumps(wanted))
    return url


# -- PostgreSQL --------------------------------------------------------------------------------
def pg_up() -> bool:
    """Whether a PostgreSQL server answers on 127.0.0.1:5432."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), timeout=1):
        return True
    return False


def drop_pg(recorded: int) -> None:
    """Drop the PostgreSQL ledger of ``recorded`` files, if there is one (the smoke run's are small)."""
    if pg_up():
        _psql("postgres", f"DROP DATABASE IF EXISTS byo_bench_ledger_{recorded} WITH (FORCE)")


def _psql(database: str, sql: str) -> str:
    command = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-At", "-q", "-c", sql]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def _copy(cursor: object, table: str, columns: str, rows: Iterator[tuple[object, ...]]) -> None:
    """``COPY table FROM STDIN`` in batches (text format: no row holds a tab, newline or backslash)."""
    batch: list[str] = []
    for row in rows:
        batch.append("\t".join(r"\N" if value is None else str(value) for value in row))
        if len(batch) == _BATCH:
            cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", io.StringIO("\n".join(batch) + "\n"))  # type: ignore[attr-defined]
            batch.clear()
    if batch:
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", io.StringIO("\n".join(batch) + "\n"))  # type: ignore[attr-defined]


def pg_url(recorded: int, listed: int = LISTED) -> str:
    """A PostgreSQL ledger of ``recorded`` files on 127.0.0.1:5432 (filled now unless it is already)."""
    import psycopg2

    from airflow_byo.ledger.state import Ledger

    name = f"byo_bench_ledger_{recorded}"
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    wanted = json.dumps({"layout": _LAYOUT, "recorded": recorded, "listed": listed})
    exists = _psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1"
    if exists:
        marker = _psql(name, "SELECT to_regclass('byo_bench_marker') IS NOT NULL")
        if marker == "t" and _psql(name, "SELECT value FROM byo_bench_marker") == wanted:
            return url
        _psql("postgres", f"DROP DATABASE {name} WITH (FORCE)")
    _psql("postgres", f"CREATE DATABASE {name}")
    Ledger(FLOW_ID, url).engine.dispose()  # the schema, as the code creates it
    connection = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=name)
    try:
        with connection, connection.cursor() as cursor:
            _copy(cursor, "byo_files", _FILE_COLUMNS, _file_rows(recorded, listed))
            _copy(cursor, "byo_events", _EVENT_COLUMNS, _event_rows(recorded, listed))
            cursor.execute("CREATE TABLE byo_bench_marker (value text)")
            cursor.execute("INSERT INTO byo_bench_marker VALUES (%s)", (wanted,))
    finally:
        connection.close()
    _psql(name, "VACUUM ANALYZE")
    return url
