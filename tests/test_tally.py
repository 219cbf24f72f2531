"""
The tally of a run (airflow_byo.tally): counts and sums over every file, but only the first
results of each status and a bounded sample of durations are kept, whatever the size of the run
(issue 24: a run of 100,000 files must not hold 100,000 results).
"""

from __future__ import annotations

import json
import random
import statistics

from airflow_byo.results import MAX_FILES_IN_SUMMARY, FileResult, RunSummary
from airflow_byo.tally import DurationSample, FileTally, FirstResults


def result(index: int, status: str = "processed", seconds: float = 0.1, **kwargs: object) -> FileResult:
    return FileResult(url=f"/in/{index}", status=status, size=10, seconds=seconds, **kwargs)  # type: ignore[arg-type]


def test_the_first_results_are_kept_in_run_order_whatever_order_they_arrive_in() -> None:
    first = FirstResults(limit=3)
    for order in (5, 1, 4, 0, 3, 2):
        first.add(result(order), order, arrival=order)
    assert [r.url for r in first.sorted()] == ["/in/0", "/in/1", "/in/2"]


def test_results_of_the_same_place_keep_their_arrival_order() -> None:
    first = FirstResults(limit=2)
    for arrival in range(4):
        first.add(result(arrival), order=0, arrival=arrival)
    assert [r.url for r in first.sorted()] == ["/in/0", "/in/1"]


def test_a_long_run_keeps_a_bounded_number_of_results_and_counts_them_all() -> None:
    tally = FileTally(results_kept=50)
    statuses = ["processed"] * 6 + ["failed", "quarantined"]
    rng = random.Random(1)
    chosen = [rng.choice(statuses) for _ in range(5000)]
    for order, status in reversed(list(enumerate(chosen))):  # the worst order: the latest first
        tally.add(result(order, status, bytes_out=3 if status == "processed" else 0), {}, {}, order=order)
    assert tally.total == 5000
    assert tally.counts == {s: chosen.count(s) for s in set(chosen)}
    assert len(tally.files) <= 3 * 50  # per status, never per file
    # the run's first results, in its order: the summary's list and lineage's files are exact
    assert [r.url for r in tally.files[:50]] == [f"/in/{i}" for i in range(50)]
    processed = [r.url for r in tally.files if r.status == "processed"]
    assert processed == [f"/in/{i}" for i, s in enumerate(chosen) if s == "processed"][:50]
    assert [r.url for r in tally.failed] == [f"/in/{i}" for i, s in enumerate(chosen) if s == "failed"][:50]
    assert tally.bytes_out == 3 * chosen.count("processed")
    assert tally.bytes_in == 10 * 5000


def test_durations_are_exact_up_to_the_sample_then_a_sample_with_the_exact_maximum() -> None:
    small = DurationSample(kept=100)
    for seconds in (0.3, 0.1, 0.2):
        small.add(seconds)
    assert (small.median, small.max, small.exact) == (0.2, 0.3, True)

    rng = random.Random(7)
    values = [rng.lognormvariate(0, 0.5) for _ in range(20_000)]
    big = DurationSample(kept=2000)
    for seconds in values:
        big.add(seconds)
    assert big.exact is False
    assert big.count == 20_000
    assert big.max == max(values)
    assert big.median is not None
    true = statistics.median(values)
    assert abs(big.median - true) / true < 0.05  # a uniform sample of 2,000: ~1-2% off


def test_the_summary_does_not_grow_with_the_run_and_says_when_its_median_is_sampled() -> None:
    def summary(files: int) -> RunSummary:
        tally = FileTally(durations=DurationSample(kept=500))
        for index in range(files):
            tally.add(result(index, outputs=[f"{index}.jsonl"], records_out=2), {}, {}, order=index)
        return RunSummary(source="/in", destination="/out", tally=tally, files_seen=files)

    small, big = summary(200).as_dict(), summary(20_000).as_dict()
    assert (small["seconds_per_file_p50_exact"], big["seconds_per_file_p50_exact"]) == (True, False)
    assert (big["files_processed"], big["records_out"], big["outputs_written"]) == (20_000, 40_000, 20_000)
    assert len(big["files"]) == MAX_FILES_IN_SUMMARY
    assert big["files_not_listed"] == 20_000 - MAX_FILES_IN_SUMMARY
    assert len(json.dumps(big)) - len(json.dumps(small)) < 100  # a few more digits, nothing per file
    rows = dict(line.strip().split("  ", 1) for line in summary(20_000).format_table().splitlines()[1:])
    assert rows["seconds per file p50 / max"].strip() == "~0.1 / 0.1"  # a sampled median is marked
