"""
The ledger as the runner's file tracker (airflow_byo.ledger.tracking): claims in chunks as the run
goes, outcomes recorded, and what was claimed but not processed given back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from airflow_byo.ledger.state import Ledger
from airflow_byo.ledger.tracking import LedgerTracker
from airflow_byo.results import FileResult
from tests.ledger.conftest import files


def test_files_are_claimed_a_chunk_at_a_time(ledger: Ledger) -> None:
    listing = files(*(f"f{i}" for i in range(5)))
    with LedgerTracker(ledger, lease_seconds=60, chunk=2, claim_seconds=0) as tracker:  # never "quick"
        claimed = tracker.claimed(listing)
        assert next(claimed) == listing[0]
        assert ledger.counts() == {"claimed": 2}  # not the whole listing, and nothing claimed ahead
        other = ledger.claim(listing[2:4], "another-run", lease_seconds=60)  # a concurrent run
        assert other == listing[2:4]
        assert list(claimed) == [listing[1], listing[4]]
        assert tracker.taken_elsewhere == 2
        for file in (listing[0], listing[1], listing[4]):
            tracker.settle(file, FileResult(url=file.url, status="processed", outputs=["x"]), False)
    assert ledger.counts() == {"done": 3, "claimed": 2}


class _Clock:
    """``time.monotonic`` for the tracker, moved by the test: how long each file "takes"."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    from airflow_byo.ledger import tracking

    fake = _Clock()
    monkeypatch.setattr(tracking, "time", fake)
    return fake


def _claim_sizes(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    real_claim = ledger.claim

    def counting_claim(candidates, token, lease_seconds):  # type: ignore[no-untyped-def]
        sizes.append(len(candidates))
        return real_claim(candidates, token, lease_seconds)

    monkeypatch.setattr(ledger, "claim", counting_claim)
    return sizes


def test_claims_grow_while_files_are_quick_and_shrink_when_they_are_slow(
    ledger: Ledger, clock: _Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """About ``claim_seconds`` of work per claim: few transactions for light files, sharing for slow ones."""
    listing = files(*(f"f{i:03d}" for i in range(160)))
    sizes = _claim_sizes(ledger, monkeypatch)
    with LedgerTracker(ledger, lease_seconds=60, chunk=4, max_chunk=32, claim_seconds=1.0) as tracker:
        for index, file in enumerate(tracker.claimed(listing)):
            clock.now += 0.01 if index < 68 else 0.5  # from file 68 on, each file takes 0.5 s
            tracker.settle(file, FileResult(url=file.url, status="processed"), False)
    # 0-3, 4-11 (8), then each next chunk claimed ahead: 12-19 (8, sized before 4-11 was
    # done), 20-35, 36-67, 68-99, and 100-131 (while 68-99 was worked on: 36-67 had gone
    # quickly). 68-99 took 16 s: halved to 16, 100-131 too: 8, and no more claims ahead.
    assert sizes == [4, 8, 8, 16, 32, 32, 32, 8, 8, 8, 4]
    assert ledger.counts() == {"done": 160}


def test_only_quick_files_are_claimed_a_chunk_ahead(ledger: Ledger, clock: _Clock) -> None:
    listing = files(*(f"f{i:02d}" for i in range(40)))
    with LedgerTracker(ledger, lease_seconds=60, chunk=4, claim_seconds=1.0) as tracker:
        claimed = tracker.claimed(listing)
        for _ in range(4):  # the first chunk, each file slow: no claim ahead
            next(claimed)
            clock.now += 2.0
        assert ledger.counts() == {"claimed": 4}
        for _ in range(5):  # the second chunk (4 files), quick from now on, and into the third
            next(claimed)
            clock.now += 0.01
        # The third chunk (8: the second went quickly) is worked on, and the fourth (sized
        # before the third is done) is claimed ahead.
        _eventually(lambda: ledger.counts() == {"claimed": 4 + 4 + 8 + 8})


def _eventually(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for what the tracker's ledger thread writes (no time is asserted: a generous deadline)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the ledger thread did not write it"
        time.sleep(0.02)


def test_outcomes_are_recorded_with_their_error(ledger: Ledger) -> None:
    done, failed, quarantined = files("done.csv", "failed.csv", "quarantined.csv")
    with LedgerTracker(ledger, lease_seconds=60) as tracker:
        assert list(tracker.claimed([done, failed, quarantined])) == [done, failed, quarantined]
        tracker.settle(done, FileResult(url=done.url, status="processed", outputs=["done.jsonl"]), False)
        bad = FileResult(url=failed.url, status="failed", error_type="KeyError", error="'price'")
        tracker.settle(failed, bad, False)
        hung = FileResult(url=quarantined.url, status="quarantined", error_type="Timeout", error="hung")
        tracker.settle(quarantined, hung, True)
    records = {r["path"]: r for r in ledger.records()}
    assert {path: r["state"] for path, r in records.items()} == {
        "done.csv": "done",
        "failed.csv": "failed",
        "quarantined.csv": "quarantined",
    }
    assert records["failed.csv"]["error"] == "KeyError: 'price'"
    assert records["quarantined.csv"]["error"] == "Timeout: hung"
    assert ledger.history("done.csv")[-1]["details"] == {"outputs": ["done.jsonl"]}


def test_claims_not_settled_are_given_back_when_the_run_ends(ledger: Ledger) -> None:
    listing = files("a", "b")
    with LedgerTracker(ledger, lease_seconds=60, chunk=1) as tracker:
        claimed = tracker.claimed(listing)
        first, second = next(claimed), next(claimed)
        tracker.settle(first, FileResult(url=first.url, status="processed"), False)
        # the run stops here (fail_fast, or an error): `second` was claimed, never settled
    assert ledger.new_files(listing) == [second]  # the next run takes it, lease or not
    assert ledger.claim([second], "next-run", lease_seconds=60) == [second]
    assert ledger.records(states=["claimed"])[0]["attempts"] == 1  # a give-back is no attempt


def test_the_rest_of_a_claimed_chunk_is_given_back_too(ledger: Ledger) -> None:
    listing = files("a", "b", "c")
    with LedgerTracker(ledger, lease_seconds=60, chunk=3) as tracker:
        first = next(tracker.claimed(listing))  # fail_fast: the run stops after one file
        tracker.settle(first, FileResult(url=first.url, status="processed"), False)
    assert ledger.new_files(listing) == listing[1:]


def test_children_side_by_side_claim_and_settle_from_threads(ledger: Ledger) -> None:
    # What job_config.workers does: several threads pull from one sequence of claims and settle.
    from concurrent.futures import ThreadPoolExecutor

    from airflow_byo.runner.workers import SharedClaims

    listing = files(*(f"f{i:02d}" for i in range(40)))
    with LedgerTracker(ledger, lease_seconds=60, chunk=3) as tracker:
        claims = SharedClaims(tracker.claimed(listing))

        def work(_: int) -> list[str]:
            taken = []
            for _, file in claims:
                tracker.settle(file, FileResult(url=file.url, status="processed", outputs=["x"]), False)
                taken.append(file.url)
            return taken

        with ThreadPoolExecutor(4) as threads:
            taken = [url for urls in threads.map(work, range(4)) for url in urls]
    assert sorted(taken) == [file.url for file in listing]  # each file to exactly one thread
    assert ledger.counts() == {"done": 40}


def test_a_slow_files_outcome_is_written_at_once_quick_ones_within_settle_seconds(ledger: Ledger) -> None:
    # "still-working" stays claimed throughout: the quick outcomes are not the run's last ones
    listing = files("slow-1", "slow-2", "quick-1", "quick-2", "quick-3", "still-working")
    with LedgerTracker(ledger, lease_seconds=60, settle_seconds=0.5) as tracker:
        claimed = list(tracker.claimed(listing))

        def settle(index: int) -> None:
            tracker.settle(claimed[index], FileResult(url=claimed[index].url, status="processed"), False)

        settle(0)  # the first outcome: nothing to batch it with, handed to the ledger at once
        assert tracker.outcomes_waiting == 0
        _eventually(lambda: ledger.counts() == {"done": 1, "claimed": 5})
        time.sleep(0.7)  # a slow file: a worker killed now must not repeat it
        settle(1)
        assert tracker.outcomes_waiting == 0
        _eventually(lambda: ledger.counts() == {"done": 2, "claimed": 4})
        for index in (2, 3, 4):  # quick ones come within settle_seconds of the previous: batched
            settle(index)
        assert tracker.outcomes_waiting == 3
        assert ledger.counts() == {"done": 2, "claimed": 4}
        # ...and written within settle_seconds although no further outcome comes.
        _eventually(lambda: ledger.counts() == {"done": 5, "claimed": 1})
        assert tracker.outcomes_waiting == 0
        settle(5)


def test_the_runs_last_outcome_is_written_at_once(ledger: Ledger) -> None:
    """Once every file was claimed and handed out, the last settle does not wait for its batch."""
    with LedgerTracker(ledger, lease_seconds=60, settle_seconds=60) as tracker:
        claimed = tracker.claimed(files("a", "b", "c"))
        a, b, c = next(claimed), next(claimed), next(claimed)
        for file in (a, b, c):
            tracker.settle(file, FileResult(url=file.url, status="processed"), False)
        assert tracker.outcomes_waiting == 2  # a was written at once (the first); b, c may have company
        assert list(claimed) == []  # the claims are used up and all settled: written now
        assert tracker.outcomes_waiting == 0
        _eventually(lambda: ledger.counts() == {"done": 3})

        d, e, f = tracker.claimed(files("d", "e", "f"))  # all handed out first, then settled
        for file in (d, e):
            tracker.settle(file, FileResult(url=file.url, status="processed"), False)
        assert tracker.outcomes_waiting == 2  # f is still being worked on
        tracker.settle(f, FileResult(url=f.url, status="processed"), False)
        assert tracker.outcomes_waiting == 0
        _eventually(lambda: ledger.counts() == {"done": 6})


def test_a_failed_ledger_write_is_raised_by_the_next_call_and_its_outcomes_kept(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    listing = files("a", "b", "c")
    real_settle_many = ledger.settle_many
    failures = [OperationalError("UPDATE byo_files", {}, Exception("the ledger is down"))]

    def flaky(outcomes, token):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        real_settle_many(outcomes, token)

    monkeypatch.setattr(ledger, "settle_many", flaky)
    with LedgerTracker(ledger, lease_seconds=60, settle_batch=1) as tracker:
        a, b, c = tracker.claimed(listing)
        tracker.settle(a, FileResult(url=a.url, status="processed"), False)  # its write fails
        _eventually(lambda: tracker.outcomes_waiting == 1)  # kept for the next write
        with pytest.raises(OperationalError, match="the ledger is down"):
            tracker.settle(b, FileResult(url=b.url, status="processed"), False)
        tracker.settle(c, FileResult(url=c.url, status="processed"), False)  # the run goes on
    records = {r["path"]: r["state"] for r in ledger.records()}
    # a's outcome was written after all; b's was refused with the error, so b stays claimed
    # until the run gave it back (processed again by the next run: nothing lost).
    assert records == {"a": "done", "b": "failed", "c": "done"}
    assert ledger.new_files(listing) == [listing[1]]
