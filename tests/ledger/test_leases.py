"""Leases (airflow_byo.ledger.leases): a live run keeps its claims; a stopped one lets them expire."""

from __future__ import annotations

import time

from airflow_byo.ledger.leases import LeaseKeeper
from airflow_byo.ledger.state import Ledger
from tests.ledger.conftest import files


def test_claims_are_renewed_while_the_keeper_runs_and_expire_after(ledger: Ledger) -> None:
    [file] = files("a.csv")
    assert ledger.claim([file], "live", lease_seconds=0.6) == [file]
    with LeaseKeeper(ledger, "live", lease_seconds=0.6):
        time.sleep(1.5)  # well past the first lease: renewed every 0.2 s
        assert ledger.new_files([file]) == []
        assert ledger.claim([file], "other", lease_seconds=60) == []
    time.sleep(0.9)  # nobody renews any more
    assert ledger.new_files([file]) == [file]
    assert ledger.claim([file], "other", lease_seconds=60) == [file]


def test_the_keeper_renews_only_its_own_claims(ledger: Ledger) -> None:
    mine, theirs = files("mine.csv", "theirs.csv")
    ledger.claim([mine], "me", lease_seconds=0.6)
    ledger.claim([theirs], "them", lease_seconds=0.6)
    with LeaseKeeper(ledger, "me", lease_seconds=0.6):
        time.sleep(1.2)
        assert ledger.new_files([mine, theirs]) == [theirs]
