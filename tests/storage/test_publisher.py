"""
Publishing a run's outputs (airflow_byo.storage.publisher): staging, unique names, final URLs
(the ones summary, quarantine log and lineage reuse), and quarantine with its error record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.runner.child_messages import FileOutcome, StagedOutput
from airflow_byo.runtime.protocol import output_path
from airflow_byo.storage import TEMP_MARKER, Location, SourceFile, StagedInput
from airflow_byo.storage.publisher import Publisher, discard_staged_outputs
from tests.backends import Backend


def stage(publisher: Publisher, seq: int, outputs: dict[str, bytes]) -> list[StagedOutput]:
    """Write ``outputs`` where the child would for the run's ``seq``-th file."""
    staged = []
    for index, (name, data) in enumerate(outputs.items()):
        path = output_path(publisher.out_prefix(seq), index)
        Path(path).write_bytes(data)
        staged.append(StagedOutput(name, path, len(data), None))
    return staged


def test_publish_returns_the_final_urls_and_removes_what_was_staged(backend: Backend) -> None:
    with Publisher(backend.location("out", "destination")) as publisher:
        outputs = stage(publisher, 0, {"a.jsonl": b"{}\n", "by_day/2024-05-01.csv": b"x\n"})
        Path(output_path(publisher.out_prefix(0), 2)).write_text("left by the child, never reported")
        urls = publisher.publish(outputs, publisher.out_prefix(0))
        assert urls == [backend.url("out/a.jsonl"), backend.url("out/by_day/2024-05-01.csv")]
        assert list(Path(publisher.staging_dir).iterdir()) == []
    assert backend.get("out/a.jsonl") == b"{}\n"
    assert backend.get("out/by_day/2024-05-01.csv") == b"x\n"
    assert backend.names("out") == ["a.jsonl", "by_day/2024-05-01.csv"]


def test_local_staging_lies_next_to_the_destination_and_is_removed(tmp_path: Path) -> None:
    with Publisher(Location(str(tmp_path / "out"))) as publisher:
        staging = Path(publisher.staging_dir)
        assert staging.parent == tmp_path  # same file system, outside the destination tree
        assert list((tmp_path / "out").iterdir()) == []
        assert staging.name.startswith(TEMP_MARKER)
        assert publisher.out_prefix(7) == str(staging / "000007")
    assert not staging.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_an_output_name_may_be_written_by_one_input_only(tmp_path: Path) -> None:
    publisher = Publisher(Location(str(tmp_path / "out")))
    one = [StagedOutput("all.txt", "/unused", 1, None)]
    assert publisher.reserve("/in/a.txt", one) is None
    assert publisher.reserve("/in/a.txt", [StagedOutput("other.txt", "/unused", 1, None)]) is None
    clash = publisher.reserve("/in/b.txt", [StagedOutput("mine.txt", "/u", 1, None), *one])
    assert clash == (
        "output 'all.txt' was already written by /in/a.txt in this run; make output names unique per "
        "input, e.g. job_config.output_name '{rel_dir}/{stem}.{ext}' or include the input's name in "
        "ctx.output() names"
    )
    # An input whose names clash reserves none of them.
    assert publisher.reserve("/in/c.txt", [StagedOutput("mine.txt", "/u", 1, None)]) is None


def test_quarantine_copies_the_input_and_its_error_record(tmp_path: Path) -> None:
    source = tmp_path / "in" / "2024"
    source.mkdir(parents=True)
    (source / "bad.csv").write_text("broken,header")
    file = SourceFile(str(source / "bad.csv"), "2024/bad.csv", 13, 1714521600.0, "etag-1")
    outcome = FileOutcome(
        status="timeout", error_type="Timeout", error="hung", traceback="tb", attempts=2, seconds=1.0
    )
    quarantine = Location(str(tmp_path / "out" / "_quarantine"), role="quarantine")
    with Publisher(Location(str(tmp_path / "out")), quarantine) as publisher:
        url = publisher.quarantine(file, StagedInput(str(source / "bad.csv"), temporary=False), outcome)
    assert url == str(tmp_path / "out" / "_quarantine" / "2024" / "bad.csv")
    assert Path(url).read_text() == "broken,header"
    assert (source / "bad.csv").read_text() == "broken,header"  # copied, never moved
    record = json.loads(Path(url + ".error.json").read_text())
    assert {key: value for key, value in record.items() if key != "quarantined_at"} == {
        "url": file.url,
        "size": 13,
        "mtime": 1714521600.0,
        "etag": "etag-1",
        "attempts": 2,
        "status": "timeout",
        "error_type": "Timeout",
        "error": "hung",
        "traceback": "tb",
    }
    assert outcome.quarantined
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_quarantine"]


def test_quarantine_to_a_remote_location_returns_its_url(backend: Backend, tmp_path: Path) -> None:
    staged = tmp_path / "staged-copy"
    staged.write_bytes(b"bad bytes")
    file = SourceFile("s3://elsewhere/in/x.bin", "x.bin", 9, None)
    outcome = FileOutcome(status="error", error_type="ValueError", error="bad")
    with Publisher(Location(str(tmp_path / "out")), backend.location("q", "quarantine")) as publisher:
        assert publisher.quarantine(file, StagedInput(str(staged), True), outcome) == backend.url("q/x.bin")
    assert backend.get("q/x.bin") == b"bad bytes"
    assert json.loads(backend.get("q/x.bin.error.json") or b"{}")["error"] == "bad"


def test_quarantine_needs_a_quarantine_location(tmp_path: Path) -> None:
    with Publisher(Location(str(tmp_path / "out"))) as publisher, pytest.raises(ByoConfigError) as raised:
        publisher.quarantine(
            SourceFile("/in/a", "a", 1, None), StagedInput("/in/a", False), FileOutcome(status="error")
        )
    assert str(raised.value) == "error_policy 'quarantine' needs a quarantine location"


def test_discarding_staged_outputs_takes_only_that_files_outputs(tmp_path: Path) -> None:
    staging = tmp_path / "odd [name]*"
    staging.mkdir()
    prefix = str(staging / "000001")
    for path in (output_path(prefix, 0), output_path(prefix, 12), str(staging / "000010-00000")):
        Path(path).write_text("x")
    discard_staged_outputs(prefix)
    assert sorted(p.name for p in staging.iterdir()) == ["000010-00000"]
    discard_staged_outputs(prefix)  # nothing left: no error
