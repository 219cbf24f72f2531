"""The ledger's file state (airflow_byo.ledger.state): its rules, on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_byo.ledger.state import Ledger, fingerprint
from airflow_byo.storage import SourceFile
from tests.ledger.conftest import files


def process(ledger: Ledger, listing: list[SourceFile], token: str = "run-1") -> list[str]:
    """Claim and complete every new file; return the paths processed."""
    won = ledger.claim(ledger.new_files(listing), token, lease_seconds=60)
    for file in won:
        ledger.done(file, token, [f"{file.relative_path}.out"])
    return [f.relative_path for f in won]


def test_each_identity_is_processed_once(ledger: Ledger) -> None:
    listing = files("a.csv", "b.csv")
    assert process(ledger, listing) == ["a.csv", "b.csv"]
    assert ledger.new_files(listing) == []
    assert process(ledger, listing + files("c.csv")) == ["c.csv"]
    assert ledger.counts() == {"done": 3}


def test_changed_file_is_reprocessed_or_ignored(ledger: Ledger) -> None:
    process(ledger, files("a.csv"))
    changed = files("a.csv", size=99)
    assert fingerprint(changed[0]) != fingerprint(files("a.csv")[0])
    assert ledger.new_files(changed, on_change="ignore") == []
    assert [f.relative_path for f in ledger.new_files(changed)] == ["a.csv"]


def test_etag_is_the_fingerprint_when_there_is_one() -> None:
    file = SourceFile("s3://b/a", "a", 1, 5.0, etag="abc")
    assert fingerprint(file) == "etag:abc"


def test_claims_are_exclusive(ledger: Ledger) -> None:
    listing = files(*(f"f{i}" for i in range(20)))
    first = ledger.claim(listing[:15], "run-1", lease_seconds=60)
    second = ledger.claim(listing[5:], "run-2", lease_seconds=60)
    assert [f.relative_path for f in first] == [f"f{i}" for i in range(15)]
    assert [f.relative_path for f in second] == [f"f{i}" for i in range(15, 20)]
    assert ledger.new_files(listing) == []  # all held under live leases


def test_an_expired_claim_is_taken_over(ledger: Ledger) -> None:
    [file] = files("a.csv")
    assert ledger.claim([file], "dead-worker", lease_seconds=0.2) == [file]
    assert ledger.claim([file], "other", lease_seconds=60) == []
    time.sleep(0.3)
    assert ledger.new_files([file]) == [file]
    assert ledger.claim([file], "other", lease_seconds=60) == [file]
    ledger.done(file, "dead-worker", ["late.out"])  # the old holder can no longer settle it
    assert ledger.records()[0]["state"] == "claimed"
    assert ledger.records()[0]["attempts"] == 2


def test_renew_keeps_a_live_claim(ledger: Ledger) -> None:
    [file] = files("a.csv")
    ledger.claim([file], "live", lease_seconds=0.3)
    time.sleep(0.2)
    assert ledger.renew("live", lease_seconds=60) == 1
    time.sleep(0.2)
    assert ledger.new_files([file]) == []


def test_failed_files_are_retried_quarantined_ones_are_not(ledger: Ledger) -> None:
    bad, worse = files("bad.csv", "worse.csv")
    ledger.claim([bad, worse], "run-1", lease_seconds=60)
    ledger.failed(bad, "run-1", "ValueError: no header")
    ledger.failed(worse, "run-1", "Timeout: hung", quarantined=True)
    assert ledger.counts() == {"failed": 1, "quarantined": 1}
    assert ledger.new_files([bad, worse]) == [bad]
    assert ledger.forget(states=["quarantined"], reason="replay") == 1
    assert ledger.new_files([bad, worse]) == [bad, worse]


def test_release_gives_back_unprocessed_claims(ledger: Ledger) -> None:
    listing = files("a", "b")
    ledger.claim(listing, "run-1", lease_seconds=60)
    ledger.release(listing[1:], "run-1")
    assert ledger.new_files(listing) == listing[1:]


def test_history_counts_and_operations(ledger: Ledger) -> None:
    process(ledger, files("2024/a.csv", "2024/b.csv", "2025/c.csv"))
    history = ledger.history("2024/a.csv")
    assert [event["event"] for event in history] == ["claimed", "done"]
    assert history[1]["details"] == {"outputs": ["2024/a.csv.out"]}
    assert ledger.forget(pattern="2024/*", reason="reprocess") == 2
    assert ledger.counts() == {"done": 1}
    assert [e["event"] for e in ledger.history("2024/a.csv")][-1] == "forgotten"
    cutoff = time.time()
    time.sleep(0.05)
    process(ledger, files("2026/d.csv"))
    assert ledger.forget(since=cutoff, reason="rewind") == 1
    assert sorted(r["path"] for r in ledger.records()) == ["2025/c.csv"]
    assert ledger.forget(reason="reset") == 1
    assert ledger.counts() == {}


def test_flows_do_not_see_each_other(ledger_db: dict[str, Any]) -> None:
    one, two = Ledger("flow.one", ledger_db["url"]), Ledger("flow.two", ledger_db["url"])
    process(one, files("a"))
    assert [f.relative_path for f in two.new_files(files("a"))] == ["a"]


def test_forget_paths_matches_names_literally(ledger: Ledger) -> None:
    names = ("x[1].csv", "x1.csv", "a*.csv", "ab.csv", "a1.csv", "q?.csv", "qq.csv", "done.csv")
    listing = files(*names)
    ledger.claim(listing, "run-1", lease_seconds=60)
    for file in listing[:-1]:
        ledger.failed(file, "run-1", "ValueError: bad", quarantined=True)
    ledger.done(listing[-1], "run-1", ["done.out"])
    assert ledger.forget(paths=["x[1].csv"], states=["quarantined"], reason="replay") == 1
    assert ledger.forget(paths=["a*.csv", "q?.csv"], states=["quarantined"], reason="replay") == 2
    assert ledger.forget(paths=["done.csv", "missing.csv"], states=["quarantined"], reason="replay") == 0
    assert sorted(r["path"] for r in ledger.records()) == ["a1.csv", "ab.csv", "done.csv", "qq.csv", "x1.csv"]
    assert [e["event"] for e in ledger.history("a*.csv")][-1] == "forgotten"
    assert ledger.forget(paths=[], reason="nothing") == 0  # an empty selection is not "everything"
    assert len(ledger.records()) == 5


def test_forget_paths_in_chunks(ledger: Ledger) -> None:
    listing = files(*(f"f{i}.csv" for i in range(1200)))
    process(ledger, listing)
    wanted = [f"f{i}.csv" for i in range(0, 1200, 2)] + ["f0.csv"]  # a repeat counts once
    assert ledger.forget(paths=wanted, reason="reprocess") == 600
    assert ledger.counts() == {"done": 600}


def test_forget_takes_a_glob_or_paths_not_both(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="not both"):
        ledger.forget(pattern="*", paths=["a"], reason="x")


def test_outcomes_name_their_parts() -> None:
    [file] = files("a.csv")
    done = Ledger.done_outcome(file, ["a.out"])
    assert (done.file, done.state, done.details) == (file, "done", {"outputs": ["a.out"]})
    assert done.columns == {"outputs": '["a.out"]', "error": None}
    failed = Ledger.failed_outcome(file, "E" * 9000, quarantined=True)
    assert (failed.state, len(failed.details["error"]), len(failed.columns["error"])) == (
        "quarantined",
        2000,
        8000,
    )
    with pytest.raises(AttributeError):
        done.state = "failed"  # type: ignore[misc]
