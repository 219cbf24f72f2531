"""
The files a flow still has to process (airflow_byo.new_files): a plain description that travels to
the triggerer and back, with its location and ledger built once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.new_files import NewFiles
from airflow_byo.storage import FileFilter, Location
from tests.conftest import make_files


def test_to_kwargs_and_from_kwargs_round_trip_through_json() -> None:
    new_files = NewFiles(
        source="s3://bucket/in",
        flow_id="dag.flow",
        source_conn_id="byo_s3",
        selection=FileFilter(
            include=("*.csv",),
            exclude=("tmp/*",),
            recursive=False,
            modified_after=datetime(2024, 5, 1, tzinfo=UTC),
            min_size=1,
            max_size=1000,
        ),
        track_files=False,
        ledger_conn_id="byo_ledger",
        on_change="ignore",
    )
    kwargs = new_files.to_kwargs()
    assert kwargs == {
        "source": "s3://bucket/in",
        "flow_id": "dag.flow",
        "source_conn_id": "byo_s3",
        "track_files": False,
        "ledger_conn_id": "byo_ledger",
        "on_change": "ignore",
        "include": ["*.csv"],  # the selection's keys are flat, as users write them
        "exclude": ["tmp/*"],
        "recursive": False,
        "modified_after": "2024-05-01T00:00:00+00:00",
        "min_size": 1,
        "max_size": 1000,
    }
    assert NewFiles.from_kwargs(json.loads(json.dumps(kwargs))) == new_files


def test_from_kwargs_fills_in_the_defaults() -> None:
    rebuilt = NewFiles.from_kwargs({"source": "/in", "flow_id": "f", "include": "*.txt"})
    assert rebuilt == NewFiles("/in", "f", selection=FileFilter(include=("*.txt",)))
    assert rebuilt.track_files is True
    assert rebuilt.on_change == "reprocess"


def test_the_location_and_the_ledger_are_built_once(tmp_path: Path, ledger_conn: str) -> None:
    new_files = NewFiles(str(tmp_path), "dag.flow", ledger_conn_id=ledger_conn)
    assert isinstance(new_files.location, Location)
    assert new_files.location is new_files.location
    assert new_files.location.role == "source"
    assert new_files.ledger is not None
    assert new_files.ledger is new_files.ledger
    assert new_files.ledger.flow_id == "dag.flow"
    assert NewFiles(str(tmp_path), "dag.flow", track_files=False).ledger is None


def test_find_lists_selects_and_leaves_out_what_the_ledger_knows(tmp_path: Path, ledger_conn: str) -> None:
    make_files(tmp_path / "in", {"a.txt": "a", "b.txt": "b", "c.csv": "c"})
    new_files = NewFiles(
        str(tmp_path / "in"), "dag.flow", selection=FileFilter(include="*.txt"), ledger_conn_id=ledger_conn
    )
    listed, new = new_files.find()
    assert (listed, [f.relative_path for f in new]) == (2, ["a.txt", "b.txt"])
    assert new_files.ledger is not None
    [a] = new_files.ledger.claim(new[:1], "run", lease_seconds=60)
    new_files.ledger.done(a, "run", [])
    assert [f.relative_path for f in new_files.find()[1]] == ["b.txt"]
    listed, new = new_files.find(snapshot=new)  # a snapshot replaces the listing
    assert (listed, [f.relative_path for f in new]) == (2, ["b.txt"])


def test_snapshot_and_load_snapshot_hand_files_over(tmp_path: Path, ledger_conn: str) -> None:
    make_files(tmp_path / "in", {f"f{i}.txt": str(i) for i in range(12)})
    new_files = NewFiles(str(tmp_path / "in"), "dag.flow", ledger_conn_id=ledger_conn)
    _, new = new_files.find()
    pointer = new_files.snapshot(new)
    assert pointer["count"] == 12
    assert pointer["sample"] == [f.relative_path for f in new[:10]]
    assert new_files.load_snapshot(pointer) == new
    batch = new_files.load_snapshot({**pointer, "batch": 1, "of": 4})
    assert [f.relative_path for f in batch] == [f.relative_path for f in new[1::4]]


@pytest.mark.parametrize("pointer", [{"count": 3}, {"snapshot": ""}, "abc", ["x"], None])
def test_a_bad_files_pointer_is_named(pointer: object) -> None:
    with pytest.raises(ByoConfigError) as raised:
        NewFiles("/in", "dag.flow", track_files=False).load_snapshot(pointer)
    assert str(raised.value) == (
        f"files must be a sensor's or planner's XCom like {{'snapshot': '<id>'}}, got {pointer!r}"
    )


def test_snapshots_need_the_ledger() -> None:
    untracked = NewFiles("/in", "dag.flow", track_files=False)
    with pytest.raises(ByoConfigError) as raised:
        untracked.load_snapshot({"snapshot": "abc"})
    assert str(raised.value) == "files= needs the ledger (track_files=True): snapshots are stored there"
    with pytest.raises(ByoConfigError) as raised:
        untracked.snapshot([])
    assert str(raised.value) == "sensors and batch planners need the ledger (track_files=True)"


def test_an_unknown_snapshot_is_named(tmp_path: Path, ledger_conn: str) -> None:
    with pytest.raises(
        ByoConfigError, match=r"snapshot 'nope' of flow 'dag.flow' does not exist in the ledger"
    ):
        NewFiles(str(tmp_path), "dag.flow", ledger_conn_id=ledger_conn).load_snapshot({"snapshot": "nope"})
