"""
A listing against the ledger (airflow_byo.ledger.listing), on SQLite and PostgreSQL: the new files
alone, in listing order, each once; any character of a path survives the bulk load; a long
listing split over two PostgreSQL connections gives the same answer.
"""

from __future__ import annotations

import pytest

from airflow_byo.ledger import listing
from airflow_byo.ledger.state import Ledger
from airflow_byo.storage import SourceFile
from tests.ledger.conftest import files


def settle(ledger: Ledger, done: list[SourceFile]) -> None:
    won = ledger.claim(done, "run-1", lease_seconds=60)
    ledger.settle_many([Ledger.done_outcome(file, []) for file in won], "run-1")


def test_only_the_new_files_come_back_in_listing_order_each_once(ledger: Ledger) -> None:
    listing_ = files(*(f"f{index:04d}.csv" for index in range(300)))
    settle(ledger, listing_[::3])
    wanted = [f for index, f in enumerate(listing_) if index % 3]
    doubled = listing_ + listing_[1:3]  # a file listed twice is still one file to process
    assert ledger.new_files(doubled) == wanted


@pytest.mark.parametrize(
    "name",
    [
        'comma,"quoted".csv',
        "tab\there.csv",
        "new\nline.csv",
        "carriage\rreturn.csv",
        "back\\slash.csv",
        "ünïcødé €.csv",
        "\\N",
        "bell\x07.csv",
        "trailing\\",
    ],
)
def test_any_character_of_a_path_survives_the_bulk_load(ledger: Ledger, name: str) -> None:
    [file] = files(name)
    other = files("plain.csv")
    assert ledger.new_files([file, *other]) == [file, *other]
    settle(ledger, [file])
    assert ledger.new_files([file, *other]) == other


@pytest.mark.parametrize("etag", ['"0123abcd"', "back\\slash\ttab", "\\N"])
def test_any_character_of_an_etag_survives_the_bulk_load(ledger: Ledger, etag: str) -> None:
    file = SourceFile("s3://bucket/a.csv", "a.csv", 10, None, etag)
    other = SourceFile("s3://bucket/a.csv", "a.csv", 10, None, etag + "x")  # the file changed since
    assert ledger.new_files([file]) == [file]
    settle(ledger, [file])
    assert ledger.new_files([file]) == []
    assert ledger.new_files([other]) == [other]


def test_a_long_listing_split_in_two_gives_the_same_answer(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing_ = files(*(f"d{index % 7}/f{index:05d}.csv" for index in range(2000)))
    listing_.sort(key=lambda f: f.relative_path)
    settle(ledger, [f for index, f in enumerate(listing_) if index % 5])
    whole = ledger.new_files(listing_)
    monkeypatch.setattr(listing, "_SPLIT_FROM", 10)  # two queries side by side on PostgreSQL
    assert ledger.new_files(listing_) == whole == listing_[::5]


def test_a_file_done_under_another_version_is_new_unless_changes_are_ignored(ledger: Ledger) -> None:
    settle(ledger, files("a.csv", mtime=1.0))
    changed = files("a.csv", mtime=2.0)
    assert ledger.new_files(changed) == changed
    assert ledger.new_files(changed, on_change="ignore") == []
