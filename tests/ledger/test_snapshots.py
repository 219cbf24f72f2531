"""Snapshots (airflow_byo.ledger.snapshots): file lists handed from a sensor or planner to a flow."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.ledger.snapshots import load_snapshot, save_snapshot
from airflow_byo.ledger.state import Ledger
from airflow_byo.storage import SourceFile
from tests.ledger.conftest import files


def test_snapshots_round_trip_in_batches(ledger: Ledger) -> None:
    listing = files(*(f"f{i}" for i in range(7)))
    snapshot = save_snapshot(ledger, listing)
    assert load_snapshot(ledger, snapshot) == listing
    batches = [load_snapshot(ledger, snapshot, batch=b, of=3) for b in range(3)]
    assert sorted(f.relative_path for batch in batches for f in batch) == sorted(
        f.relative_path for f in listing
    )
    assert all(batches)
    with pytest.raises(ByoConfigError, match=r"snapshot 'nope' of flow 'dag.task' does not exist"):
        load_snapshot(ledger, "nope")


def test_a_snapshot_keeps_every_field_and_the_order_beyond_one_statement(ledger: Ledger) -> None:
    listing = [SourceFile(f"s3://b/{i:04d}", f"{i:04d}", i, i + 0.5, f"etag{i}") for i in range(1200, 0, -1)]
    assert load_snapshot(ledger, save_snapshot(ledger, listing)) == listing  # 500 rows per statement


def test_a_batch_past_the_end_is_empty_not_an_error(ledger: Ledger) -> None:
    snapshot = save_snapshot(ledger, files("a", "b"))
    assert [f.relative_path for f in load_snapshot(ledger, snapshot, batch=1, of=3)] == ["b"]
    assert load_snapshot(ledger, snapshot, batch=2, of=3) == []


def test_a_flow_cannot_load_another_flows_snapshot(ledger: Ledger, ledger_db: dict[str, Any]) -> None:
    snapshot = save_snapshot(ledger, files("a"))
    with pytest.raises(ByoConfigError) as raised:
        load_snapshot(Ledger("other.flow", ledger_db["url"]), snapshot)
    assert str(raised.value) == f"snapshot {snapshot!r} of flow 'other.flow' does not exist in the ledger"
