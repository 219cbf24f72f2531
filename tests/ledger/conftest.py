"""Shared by the ledger tests: listings and a fresh ledger on each database (SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_byo.ledger.state import Ledger
from airflow_byo.storage import SourceFile


def files(*names: str, size: int = 10, mtime: float = 1000.0) -> list[SourceFile]:
    """A listing of ``names`` under ``/src``, all of one size and modification time."""
    return [SourceFile(f"/src/{n}", n, size, mtime) for n in names]


@pytest.fixture
def ledger(ledger_db: dict[str, Any]) -> Ledger:
    return Ledger("dag.task", ledger_db["url"])
