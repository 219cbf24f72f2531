"""
Results (airflow_byo.results): a file's status decided in one place; the run summary's counts,
sizes, durations, capped file list and log table.
"""

from __future__ import annotations

import json

import pytest

from airflow_byo.results import (
    MAX_FILES_IN_SUMMARY,
    ClaimsReport,
    FileOutcome,
    FileResult,
    FileTally,
    RunSummary,
    StagedOutput,
    file_result,
)


def result(name: str, status: str, seconds: float, size: int = 10, **kwargs: object) -> FileResult:
    return FileResult(url=f"/in/{name}", status=status, size=size, seconds=seconds, **kwargs)  # type: ignore[arg-type]


def sample() -> RunSummary:
    summary = RunSummary(
        source="/in", destination="/out", files_seen=5, claims=ClaimsReport(files_listed=9), seconds=1.23456
    )
    done = result("a", "processed", 0.1)
    done.add_output(StagedOutput("a.jsonl", "/s/0-00000", 30, 3), "/out/a.jsonl")
    done.add_output(StagedOutput("a.txt", "/s/0-00001", 5, None), "/out/a.txt")
    summary.tally.add(done, {"last": "a", "kept": 1}, {"records_in": 4, "rows": 2})
    other = result("b", "processed", 0.3)
    other.add_output(StagedOutput("b.jsonl", "/s/1-00000", 20, 2), "/out/b.jsonl")
    summary.tally.add(other, {"last": "b"}, {"rows": 1.5})
    summary.tally.add(result("c", "failed", 0.2, error_type="KeyError", error="'price'"), {}, {})
    summary.tally.add(result("d", "quarantined", 0.5, error_type="Timeout", error="hung"), {}, {})
    summary.tally.add(result("e", "skipped", 0.0, size=1000), {}, {})
    return summary


def test_as_dict_counts_sizes_and_durations() -> None:
    data = sample().as_dict()
    expected = {
        "source": "/in",
        "destination": "/out",
        "test_mode": False,
        "files_seen": 5,
        "files_processed": 2,
        "files_failed": 1,
        "files_skipped": 1,
        "files_quarantined": 1,
        "files_listed": 9,
        "files_taken_elsewhere": 0,
        "bytes_in": 40,  # skipped files were never read
        "bytes_out": 55,
        "records_in": 4,
        "records_out": 5,
        "outputs_written": 3,
        "seconds_total": 1.235,
        "seconds_environment": 0.0,
        "seconds_per_file_p50": 0.25,  # median of 0.1, 0.3, 0.2, 0.5 (skipped files not counted)
        "seconds_per_file_max": 0.5,
        "notifications": 0,
        "insights": {"last": "b", "kept": 1},
        "counters": {"records_in": 4, "rows": 3.5},
        "files_not_listed": 0,
    }
    assert {key: data[key] for key in expected} == expected
    assert data["files"][0] == {
        "url": "/in/a",
        "status": "processed",
        "seconds": 0.1,
        "outputs": ["a.jsonl", "a.txt"],
    }
    assert data["files"][2] == {
        "url": "/in/c",
        "status": "failed",
        "seconds": 0.2,
        "error": "KeyError: 'price'",
    }
    json.dumps(data)


def test_an_empty_run_has_no_durations_or_records() -> None:
    data = RunSummary(source="/in", destination=None, test_mode=True).as_dict()
    assert data["seconds_per_file_p50"] is None
    assert data["seconds_per_file_max"] is None
    assert data["records_out"] is None
    assert data["records_in"] is None
    assert data["files"] == []


def test_the_file_list_is_capped_and_errors_are_shortened() -> None:
    summary = RunSummary(source="/in", destination="/out")
    for index in range(MAX_FILES_IN_SUMMARY + 7):
        summary.tally.add(
            result(f"f{index}", "failed", 0.01, error_type="ValueError", error="x" * 1000), {}, {}
        )
    data = summary.as_dict()
    assert len(data["files"]) == MAX_FILES_IN_SUMMARY
    assert data["files_not_listed"] == 7
    assert data["files_failed"] == MAX_FILES_IN_SUMMARY + 7  # counted, all of them
    assert data["files"][0]["error"] == ("ValueError: " + "x" * 1000)[:500]


def test_an_insight_keeps_the_value_of_the_runs_last_file_whatever_order_files_finish_in() -> None:
    tally = FileTally()
    tally.add(result("b", "processed", 0.1), {"last": "b", "only_b": 1}, {"rows": 1}, order=1)
    tally.add(result("a", "processed", 0.1), {"last": "a", "only_a": 2}, {"rows": 1}, order=0)
    tally.add(result("c", "processed", 0.1), {"last": "c"}, {"rows": 1}, order=2)
    assert tally.insights == {"last": "c", "only_b": 1, "only_a": 2}
    assert tally.counters == {"rows": 3}


def test_failed_files_are_kept_in_order_as_they_are_added() -> None:
    summary = RunSummary(source="/in", destination="/out")
    first, second = result("x", "failed", 0.1), result("y", "failed", 0.1)
    summary.tally.add(first, {}, {})
    assert summary.failed == [first]  # known at once: fail_fast asks after each file
    summary.tally.add(result("q", "quarantined", 0.1), {}, {})
    summary.tally.add(second, {}, {})
    assert summary.failed == [first, second]
    assert summary.failed[0] is first


def test_a_test_mode_output_counts_without_a_url() -> None:
    preview = result("a", "processed", 0.1)
    preview.add_output(StagedOutput("a.jsonl", "/s/0-00000", 7, None), None)
    assert (preview.outputs, preview.output_urls, preview.bytes_out, preview.records_out) == (
        ["a.jsonl"],
        [],
        7,
        None,
    )


def table_rows(summary: RunSummary) -> tuple[str, dict[str, str]]:
    """The title and the rows (label -> value) of ``summary.format_table()``."""
    title, *lines = summary.format_table().splitlines()
    assert all(line.startswith("  ") and not line.startswith("   ") for line in lines)
    return title, {line[2:].split("  ", 1)[0]: line[2:].split("  ", 1)[1].strip() for line in lines}


def test_format_table_rows() -> None:
    table = sample().format_table().splitlines()
    title, rows = table_rows(sample())
    assert title == "BYO flow run summary"
    expected = {
        "source": "/in",
        "destination": "/out",
        "files seen / processed / failed / skipped": "5 / 2 / 1 / 1",
        "files quarantined": "1",
        "files listed / taken by other runs": "9 / 0",
        "bytes in / out": "40 / 55",
        "records in / out": "4 / 5",
        "outputs written": "3",
        "seconds total (environment)": "1.235 (0.0)",
        "seconds per file p50 / max": "0.25 / 0.5",
        "insight kept": "1",
        "insight last": "b",
        "counter records_in": "4",
        "counter rows": "3.5",
        "FAILED /in/c": "KeyError: 'price'",
    }
    assert {label: rows[label] for label in expected} == expected
    assert list(rows)[-1] == "FAILED /in/c"
    width = max(len(label) for label in rows)  # values start in one column
    assert f"  {'files quarantined'.ljust(width)}  1" in table


def test_format_table_of_an_empty_test_run_uses_dashes() -> None:
    title, rows = table_rows(RunSummary(source="/in/a.csv", destination=None, test_mode=True))
    assert title == "BYO flow test run"
    assert rows["destination"] == "-"
    assert rows["files listed / taken by other runs"] == "- / 0"
    assert rows["records in / out"] == "- / -"
    assert rows["seconds per file p50 / max"] == "- / -"
    assert not [label for label in rows if label.startswith(("FAILED", "insight", "counter"))]


# -- a file's status: file_result ------------------------------------------------------------------

OUTPUTS = [StagedOutput("a.jsonl", "/s/0-00000", 30, 3), StagedOutput("a.txt", "/s/0-00001", 5, None)]


def test_a_published_file_is_processed_with_its_outputs_and_their_urls() -> None:
    outcome = FileOutcome(status="done", seconds=0.5, outputs=list(OUTPUTS))
    result = file_result("/in/a.csv", 12, outcome, published=["/out/a.jsonl", "/out/a.txt"])
    assert (result.status, result.size, result.seconds) == ("processed", 12, 0.5)
    assert (result.outputs, result.output_urls) == (["a.jsonl", "a.txt"], ["/out/a.jsonl", "/out/a.txt"])
    assert (result.bytes_out, result.records_out, result.error) == (35, 3, "")


def test_in_test_mode_outputs_count_without_urls() -> None:
    result = file_result("/in/a.csv", 12, FileOutcome(status="done", outputs=list(OUTPUTS)))
    assert (result.status, result.outputs, result.output_urls) == ("processed", ["a.jsonl", "a.txt"], [])


def test_a_published_url_per_output_or_it_is_a_bug() -> None:
    with pytest.raises(ValueError, match="zip"):
        file_result("/in/a.csv", 1, FileOutcome(status="done", outputs=list(OUTPUTS)), published=["/out/a"])


@pytest.mark.parametrize("status", ["error", "timeout", "crashed"])
def test_a_file_the_function_failed_on_is_failed_with_its_error(status: str) -> None:
    outcome = FileOutcome(status=status, seconds=2.0, error_type="KeyError", error="'price'")  # type: ignore[arg-type]
    result = file_result("/in/a.csv", 12, outcome)
    assert (result.status, result.error_type, result.error, result.seconds) == (
        "failed",
        "KeyError",
        "'price'",
        2.0,
    )
    assert result.outputs == []


def test_a_quarantined_input_is_quarantined_not_failed() -> None:
    outcome = FileOutcome(status="error", error_type="ValueError", error="bad", quarantined_to="/q/a.csv")
    result = file_result("/in/a.csv", 12, outcome)
    assert (result.status, result.error_type, result.error) == ("quarantined", "ValueError", "bad")


def test_refused_outputs_fail_the_file_and_count_none() -> None:
    outcome = FileOutcome(status="done", outputs=list(OUTPUTS))
    clash = file_result(
        "/in/b.csv", 3, outcome, refused=("OutputNameClash", "output 'a.jsonl' was already written")
    )
    assert (clash.status, clash.error_type, clash.outputs, clash.bytes_out) == (
        "failed",
        "OutputNameClash",
        [],
        0,
    )
    storage = file_result("/in/b.csv", 3, outcome, refused=("ByoStorageError", "cannot write"))
    assert (storage.status, storage.error) == ("failed", "cannot write")


def test_a_file_a_stopped_run_never_reached_is_skipped() -> None:
    result = file_result("/in/z.csv", 99, None)
    assert (result.status, result.size, result.seconds, result.error) == ("skipped", 99, 0.0, "")
