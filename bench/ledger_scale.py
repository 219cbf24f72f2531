"""
L1: finding the new files among many recorded ones costs about as much as listing the source.

Measured: ``NewFiles.find`` = listing a local source of ``recorded + new`` files plus the ledger
query that leaves the ``new`` ones (SQLite ledger with ``recorded`` files already done).
Baseline: the plain listing of the same source (``Location.list_files``), in the same run.
Target: ratio <= 2 (the query must cost no more than another listing, never a request per file).
L2: the ledger query alone on synthetic identities, to show it scales with the listing:
time per listed identity at ``recorded`` vs 10 x ``recorded``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert


def _median(func: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _populate(ledger: Any, files: list[Any]) -> None:
    """Record ``files`` as done, straight through SQL (setting up, not measured)."""
    from airflow_byo.ledger.schema import DONE
    from airflow_byo.ledger.schema import files as table
    from airflow_byo.ledger.state import fingerprint

    now = time.time()
    rows = [
        {
            "flow_id": ledger.flow_id,
            "path": f.relative_path,
            "fingerprint": fingerprint(f),
            "state": DONE,
            "attempts": 1,
            "first_seen": now,
            "updated": now,
            "size": f.size,
            "mtime": f.mtime,
        }
        for f in files
    ]
    with ledger.engine.begin() as connection:
        for start in range(0, len(rows), 5000):
            connection.execute(insert(table), rows[start : start + 5000])


def run(workdir: Path, *, recorded: int, new: int, repeat: int) -> list[tuple[str, float, float, str]]:
    source = workdir / "ledger-source"  # kept for the next run
    if not source.exists() or len(os.listdir(source)) != recorded + new:
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        for index in range(recorded + new):
            (source / f"f{index:07d}.csv").write_bytes(b"x")
    scratch = Path(tempfile.mkdtemp(dir=workdir))  # the ledger database: this run's alone
    try:
        return _figures(source, scratch / "ledger.db", recorded=recorded, new=new, repeat=repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _figures(
    source: Path, db: Path, *, recorded: int, new: int, repeat: int
) -> list[tuple[str, float, float, str]]:
    from airflow_byo.ledger.state import Ledger
    from airflow_byo.new_files import NewFiles
    from airflow_byo.storage import Location, SourceFile

    url = f"sqlite:///{db}"
    listing = Location(str(source)).list_files()
    ledger = Ledger("bench.flow", url)
    _populate(ledger, listing[:recorded])

    os.environ["AIRFLOW_CONN_BYO_BENCH_LEDGER"] = json.dumps({"conn_type": "sqlite", "host": str(db)})
    spec = NewFiles(source=str(source), flow_id="bench.flow", ledger_conn_id="byo_bench_ledger")
    found: list[Any] = []

    def find() -> None:
        found[:] = spec.find()[1]

    baseline = _median(lambda: Location(str(source)).list_files(), repeat)
    measured = _median(find, repeat)
    assert len(found) == new, f"expected {new} new files, found {len(found)}"
    rows = [(f"L1 list + find {new} new among {recorded:,} recorded (s)", measured, baseline, "<= 2.0x")]

    # L2: query cost per listed identity at two sizes (synthetic, no files on disk).
    per_item = []
    for size in (recorded, recorded * 10):
        synthetic = [SourceFile(f"/s/{i}", f"s{i:08d}", 1, 1.0) for i in range(size + new)]
        big = Ledger(f"bench.synthetic.{size}", url)
        _populate(big, synthetic[:size])
        query = functools.partial(big.new_files, synthetic)
        per_item.append(_median(query, max(1, repeat // 2)) / len(synthetic))
    rows.append(
        (
            f"L2 query time per identity, {recorded * 10:,} vs {recorded:,} recorded (us)",
            per_item[1] * 1e6,
            per_item[0] * 1e6,
            "<= 2.0x",
        )
    )
    return rows
