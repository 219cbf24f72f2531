"""
Snapshots: file lists handed from a sensor or a batch planner to the flow task through the
ledger's database, so XCom carries a snapshot id (and a batch number) rather than megabytes of
paths.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import insert, select

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.ledger.database import chunks
from airflow_byo.ledger.schema import snapshots
from airflow_byo.storage.location import SourceFile

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_byo.ledger.state import Ledger

__all__ = ["load_snapshot", "save_snapshot"]


def save_snapshot(ledger: Ledger, listing: Sequence[SourceFile]) -> str:
    """Store a file list; return its id (what a sensor or planner passes through XCom)."""
    snapshot_id = uuid.uuid4().hex
    now = time.time()
    rows = [
        {
            "snapshot_id": snapshot_id,
            "position": i,
            "flow_id": ledger.flow_id,
            "url": f.url,
            "path": f.relative_path,
            "size": f.size,
            "mtime": f.mtime,
            "etag": f.etag,
            "created": now,
        }
        for i, f in enumerate(listing)
    ]
    with ledger.engine.begin() as connection:
        for chunk in chunks(rows):
            connection.execute(insert(snapshots), list(chunk))
    return snapshot_id


def load_snapshot(ledger: Ledger, snapshot_id: str, *, batch: int = 0, of: int = 1) -> list[SourceFile]:
    """The files of a snapshot; with ``of > 1``, only batch ``batch`` of ``of`` (by position)."""
    query = select(snapshots).where(
        snapshots.c.snapshot_id == snapshot_id, snapshots.c.flow_id == ledger.flow_id
    )
    if of > 1:
        query = query.where(snapshots.c.position % of == batch)
    with ledger.engine.connect() as connection:
        rows = connection.execute(query.order_by(snapshots.c.position)).all()
    if not rows and batch == 0:
        raise ByoConfigError(
            f"snapshot {snapshot_id!r} of flow {ledger.flow_id!r} does not exist in the ledger"
        )
    return [SourceFile(r.url, r.path, r.size, r.mtime, r.etag) for r in rows]
