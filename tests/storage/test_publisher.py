"""
Publishing a run's outputs (airflow_byo.storage.publisher): staging, unique names, final URLs
(the ones summary, quarantine log and lineage reuse), and quarantine with its error record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.results import FileOutcome, StagedOutput
from airflow_byo.runtime.protocol import output_path
from airflow_byo.storage import TEMP_MARKER, Location, SourceFile, StagedInput
from airflow_byo.storage.publisher import Publisher
from tests.backends import Backend
from tests.conftest import staged_output


def stage(publisher: Publisher, seq: int, outputs: dict[str, bytes]) -> list[StagedOutput]:
    """``outputs`` of the run's ``seq``-th file as the hand-off leaves them in the taken folder."""
    staged = []
    for index, (name, data) in enumerate(outputs.items()):
        path = output_path(os.path.join(publisher.staging.taken, f"{seq:06d}"), index)
        Path(path).write_bytes(data)
        staged.append(staged_output(path, name))
    return staged


def test_publish_returns_the_final_urls_and_removes_what_was_staged(backend: Backend) -> None:
    with Publisher(backend.location("out", "destination")) as publisher:
        outputs = stage(publisher, 0, {"a.jsonl": b"{}\n", "by_day/2024-05-01.csv": b"x\n"})
        urls = publisher.publish(outputs)
        assert urls == [backend.url("out/a.jsonl"), backend.url("out/by_day/2024-05-01.csv")]
        assert list(Path(publisher.staging.taken).iterdir()) == []
    assert backend.get("out/a.jsonl") == b"{}\n"
    assert backend.get("out/by_day/2024-05-01.csv") == b"x\n"
    assert backend.names("out") == ["a.jsonl", "by_day/2024-05-01.csv"]


def test_local_staging_lies_next_to_the_destination_and_is_removed(tmp_path: Path) -> None:
    with Publisher(Location(str(tmp_path / "out"))) as publisher:
        staging = Path(publisher.staging_dir)
        assert staging.parent == tmp_path  # same file system, outside the destination tree
        assert list((tmp_path / "out").iterdir()) == []
        assert staging.name.startswith(TEMP_MARKER)
        assert publisher.staging.taken == str(staging / "taken")
    assert not staging.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_an_output_name_may_be_written_by_one_input_only(tmp_path: Path) -> None:
    publisher = Publisher(Location(str(tmp_path / "out")))
    one = [StagedOutput("all.txt", "/unused", 1, None)]
    assert publisher.reserve("/in/a.txt", one) is None
    assert publisher.reserve("/in/a.txt", [StagedOutput("other.txt", "/unused", 1, None)]) is None
    staged = [tmp_path / "taken-mine", tmp_path / "taken-all"]
    for path in staged:
        path.write_text("x")
    clashing = [
        StagedOutput("mine.txt", str(staged[0]), 1, None),
        StagedOutput("all.txt", str(staged[1]), 1, None),
    ]
    clash = publisher.reserve("/in/b.txt", clashing)
    assert [path.exists() for path in staged] == [False, False]  # never published: discarded at once
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
    assert outcome.quarantined_to is None  # the publisher reports where it went; the runner records it
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
