"""
L3/L4: the ledger with up to 10,000,000 recorded files, SQLite and PostgreSQL (127.0.0.1:5432; the
PostgreSQL rows are left out when no server answers there). The ledgers are filled once in bulk
and reused (``bench/ledger_fill.py`` says what they hold).

* L3 -- discovery: ``NewFiles.find`` over a local source of 1,000,000 files (100 folders), 100 of
  them new among 10,000,000 recorded: the listing plus the ledger query that leaves the new
  ones. Baseline: the same listing alone (``Location.list_files``). Target <= 1.5x. Measured at
  every ledger size from 1,000,000 up, for the plot; the row is the largest.
* L4 -- claim and settle per file: 2,048 identities never seen (128 in the smoke run), claimed
  and settled as a run's ledger thread does it (``Ledger.claim`` of 256 files at a time, then
  ``Ledger.settle_many`` of 64 outcomes), per file, with 10,000 to 10,000,000 recorded; removed
  again afterwards (untimed). Two layouts of the new files: landed ``together`` (one new folder,
  as files arrive in a day's folder or with growing names) and ``scattered`` (each at a random
  place of the key range: every insert then lands in a leaf page of its own in each index).
  Target: 10,000,000 within 1.2x of 10,000.

Each side alternates with the others; medians of ``repeat``. The OS page cache is warm (the
untimed first repetition reads the ledger in): what a ledger in steady use sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import time
import uuid
from typing import TYPE_CHECKING, Any

from bench import ledger_fill
from bench.timing import Row

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

__all__ = ["run"]

_CONN = "byo_bench_scale_ledger"
_CLAIM, _SETTLE = 256, 64
_LAYOUTS = ("together", "scattered")


def _connection(url: str) -> dict[str, Any]:
    """The Airflow connection of a ledger URL (what ``NewFiles`` looks up)."""
    if url.startswith("sqlite"):
        return {"conn_type": "sqlite", "host": url.removeprefix("sqlite:///")}
    database = url.rsplit("/", 1)[1]
    return {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "login": "postgres",
        "schema": database,
    }


@contextlib.contextmanager
def _as_connection(url: str) -> Iterator[str]:
    name = f"AIRFLOW_CONN_{_CONN.upper()}"
    os.environ[name] = json.dumps(_connection(url))
    try:
        yield _CONN
    finally:
        os.environ.pop(name, None)


def _alternating(repeat: int, sides: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Median of each side's own figure over ``repeat`` rounds, sides alternating; one untimed round first."""
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(repeat + 1):
        for name, side in sides.items():
            value = side()
            if round_:
                samples[name].append(value)
    return {name: statistics.median(values) for name, values in samples.items()}


# -- L3 ----------------------------------------------------------------------------------------
def _discovery(source: Path, urls: dict[int, str], repeat: int) -> dict[str, float]:
    """Seconds of the listing alone and of list + find at each ledger size (``find-<n>``)."""
    from airflow_byo.new_files import NewFiles
    from airflow_byo.storage import Location

    def listing() -> float:
        started = time.perf_counter()
        Location(str(source)).list_files()
        return time.perf_counter() - started

    def find(url: str) -> Callable[[], float]:
        def side() -> float:
            with _as_connection(url) as conn_id:
                spec = NewFiles(source=str(source), flow_id=ledger_fill.FLOW_ID, ledger_conn_id=conn_id)
                started = time.perf_counter()
                listed, new = spec.find()
                seconds = time.perf_counter() - started
            if len(new) != ledger_fill.NEW:
                raise RuntimeError(f"L3: {len(new)} new files among {listed}, expected {ledger_fill.NEW}")
            return seconds

        return side

    sides: dict[str, Callable[[], float]] = {"listing": listing}
    sides.update({f"find-{size}": find(url) for size, url in urls.items()})
    return _alternating(repeat, sides)


# -- L4 ----------------------------------------------------------------------------------------
def _fresh_files(count: int, layout: str) -> list[Any]:
    """
    ``count`` identities no ledger holds: landed ``together`` (one new folder, as a day's files
    arrive) or ``scattered`` over the key range of every ledger (each at a random place).
    """
    from airflow_byo.storage import SourceFile

    rng = random.Random()
    landing = f"d{rng.randrange(100):02d}/landing-{uuid.uuid4().hex[:8]}"
    paths = []
    for index in range(count):
        if layout == "together":
            paths.append(f"{landing}/f{index:06d}.csv")
        else:
            folder = rng.choice((f"archive/a{rng.randrange(1000):05d}", f"d{rng.randrange(100):02d}"))
            paths.append(f"{folder}/n{uuid.uuid4().hex}.csv")
    return [SourceFile(f"/bench/{path}", path, 1, 1_700_000_000.0) for path in paths]


def _claim_and_settle(url: str, layout: str, count: int) -> Callable[[], float]:
    """One repetition: seconds per file to claim and settle ``count`` new identities."""
    from sqlalchemy import delete

    from airflow_byo.ledger.schema import events, files
    from airflow_byo.ledger.state import Ledger

    ledger = Ledger(ledger_fill.FLOW_ID, url)

    def side() -> float:
        fresh, token = _fresh_files(count, layout), uuid.uuid4().hex
        started = time.perf_counter()
        for start in range(0, len(fresh), _CLAIM):
            won = ledger.claim(fresh[start : start + _CLAIM], token, 600.0)
            for first in range(0, len(won), _SETTLE):
                batch = won[first : first + _SETTLE]
                ledger.settle_many([Ledger.done_outcome(f, [f"{f.name}.jsonl"]) for f in batch], token)
        seconds = (time.perf_counter() - started) / len(fresh)
        paths = [f.relative_path for f in fresh]
        with ledger.engine.begin() as connection:  # back to its size (untimed)
            for table in (files, events):
                for first in range(0, len(paths), 500):
                    chunk = paths[first : first + 500]
                    connection.execute(
                        delete(table).where(table.c.flow_id == ledger.flow_id, table.c.path.in_(chunk))
                    )
        return seconds

    return side


# -- the figures -------------------------------------------------------------------------------
def _backend(
    name: str, workdir: Path, sizes: tuple[int, ...], listed: int, repeat: int, fresh: int
) -> dict[str, Any]:
    """One backend's figures: discovery seconds per ledger size (from ``listed`` up), claim+settle ms/file."""
    if name == "PostgreSQL" and not ledger_fill.pg_up():
        return {}
    urls = {
        size: ledger_fill.sqlite_url(workdir, size, listed)
        if name == "SQLite"
        else ledger_fill.pg_url(size, listed)
        for size in sizes
    }
    source = ledger_fill.listing_source(workdir, listed)
    found = _discovery(source, {size: url for size, url in urls.items() if size >= listed}, repeat)
    sides = {
        f"{layout}-{size}": _claim_and_settle(url, layout, fresh)
        for layout in _LAYOUTS
        for size, url in urls.items()
    }
    per_file = _alternating(repeat, sides)
    return {
        "listing": found["listing"],
        "discovery": {size: found[f"find-{size}"] for size in urls if size >= listed},
        "claim_settle_ms": {
            layout: {size: per_file[f"{layout}-{size}"] * 1e3 for size in urls} for layout in _LAYOUTS
        },
    }


def run(workdir: Path, *, smoke: bool, repeat: int) -> tuple[list[Row], dict[str, Any]]:
    """L3/L4 rows, and each backend's figures at every size (for the plot)."""
    sizes = (1_000, 20_000) if smoke else (10_000, 100_000, 1_000_000, 10_000_000)
    listed = 5_000 if smoke else ledger_fill.LISTED
    fresh = 128 if smoke else 2048  # new files per repetition of L4
    figures = {
        name: _backend(name, workdir, sizes, listed, repeat, fresh) for name in ("SQLite", "PostgreSQL")
    }
    smallest, largest = sizes[0], sizes[-1]
    rows: list[Row] = []
    for name, got in figures.items():
        if not got:
            continue
        rows.append(
            (
                f"L3 find {ledger_fill.NEW} new among {listed:,} listed, {largest:,} recorded, {name}: "
                "list + find vs the listing alone (s)",
                got["discovery"][largest],
                got["listing"],
                "<= 1.5x",
            )
        )
        rows += [
            (
                f"L4 claim + settle per new file ({layout}), {largest:,} vs {smallest:,} recorded, "
                f"{name} (ms)",
                got["claim_settle_ms"][layout][largest],
                got["claim_settle_ms"][layout][smallest],
                "<= 1.2x",
            )
            for layout in _LAYOUTS
        ]
    if smoke:
        for size in sizes:
            ledger_fill.drop_pg(size)
    return rows, {"sizes": sizes, "listed": listed, "backends": figures}
