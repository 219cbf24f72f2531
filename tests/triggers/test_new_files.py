"""
The triggers of airflow_byo.triggers.new_files, on real local directories and a real ledger (SQLite
and PostgreSQL): the deferrable sensor's (rebuilt from its kwargs, fires once or errors) and the
AssetWatcher's event trigger (its own ``run()`` on an event loop, and the serialization the
dag-processor and the triggerer apply to it).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from airflow_byo import new_files_asset
from airflow_byo.exceptions import ByoStorageError
from airflow_byo.ledger.snapshots import load_snapshot
from airflow_byo.new_files import NewFiles
from airflow_byo.sensors.new_files import ByoNewFilesSensor
from airflow_byo.storage import FileFilter
from airflow_byo.triggers.new_files import ByoNewFilesEventTrigger, ByoNewFilesTrigger, FileMemory
from tests.conftest import context, tracked_flow

# -- ByoNewFilesTrigger: the deferrable sensor's --------------------------------------------------


def first_event(trigger: ByoNewFilesTrigger) -> Any:
    async def first() -> Any:
        return await trigger.run().__anext__()

    return asyncio.run(first())


def test_trigger_reports_errors_instead_of_dying(tmp_path: Path, ledger_conn: str) -> None:
    trigger = ByoNewFilesTrigger(
        {"source": str(tmp_path / "missing"), "flow_id": "dag.flow", "ledger_conn_id": ledger_conn},
        poke_interval=0.1,
    )
    event = first_event(trigger)
    assert event.payload["status"] == "error"
    assert "does not exist" in event.payload["message"]
    sensor = ByoNewFilesSensor(
        task_id="wait", source=str(tmp_path / "missing"), flow_id="dag.flow", ledger_conn_id=ledger_conn
    )
    with pytest.raises(ByoStorageError, match=r"waiting for new files in .* failed: .*does not exist"):
        sensor.execute_complete(context(), event.payload)


def test_trigger_fires_once_with_a_snapshot_of_the_selected_files(tmp_path: Path, ledger_conn: str) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for name in ("a.txt", "b.txt", "c.csv"):
        (source / name).write_text(name)
    new_files = NewFiles(
        str(source), "dag.flow", selection=FileFilter(include=("*.txt",)), ledger_conn_id=ledger_conn
    )
    classpath, kwargs = ByoNewFilesTrigger(new_files.to_kwargs(), poke_interval=0.1).serialize()
    assert classpath == "airflow_byo.triggers.new_files.ByoNewFilesTrigger"
    event = first_event(ByoNewFilesTrigger(**kwargs))
    assert event.payload["status"] == "found"
    assert (event.payload["listed"], event.payload["count"]) == (2, 2)
    assert event.payload["sample"] == ["a.txt", "b.txt"]
    assert new_files.ledger is not None
    snapshot = load_snapshot(new_files.ledger, event.payload["snapshot"])
    assert [f.relative_path for f in snapshot] == ["a.txt", "b.txt"]


# -- ByoNewFilesEventTrigger: the AssetWatcher's --------------------------------------------------

FLOW = "dag.flow"


class Watch:
    """A trigger's ``run()`` driven by hand: the next event within a timeout, or None."""

    def __init__(self, trigger: ByoNewFilesEventTrigger) -> None:
        self.events = trigger.run()
        self.pending: asyncio.Future[Any] | None = None

    async def next(self, timeout: float = 10.0) -> dict[str, Any] | None:
        if self.pending is None:
            self.pending = asyncio.ensure_future(self.events.__anext__())
        done, _ = await asyncio.wait({self.pending}, timeout=timeout)
        if not done:
            return None
        event, self.pending = self.pending.result(), None
        return dict(event.payload)

    async def close(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.pending
        await self.events.aclose()


def trigger_for(source: Path, ledger_conn: str, **kwargs: Any) -> ByoNewFilesEventTrigger:
    new_files = NewFiles(
        str(source), FLOW, selection=FileFilter(include=("*.txt",)), ledger_conn_id=ledger_conn
    )
    return ByoNewFilesEventTrigger(new_files.to_kwargs(), **kwargs)


def spec_for(source: Path, ledger_conn: str) -> NewFiles:
    return NewFiles(str(source), FLOW, selection=FileFilter(include=("*.txt",)), ledger_conn_id=ledger_conn)


def names(files: list[Any]) -> list[str]:
    return sorted(f.relative_path for f in files)


def test_fires_for_new_files_once_then_for_newer_ones_only(tmp_path: Path, ledger_conn: str) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for name in ("a.txt", "b.txt", "skip.csv"):
        (source / name).write_text(name)

    async def scenario() -> None:
        watch = Watch(trigger_for(source, ledger_conn, poll_interval=0.05))
        try:
            first = await watch.next()
            assert first is not None
            assert (first["count"], first["listed"], first["sample"]) == (2, 2, ["a.txt", "b.txt"])
            assert (first["flow_id"], first["source"], first["recheck"]) == (FLOW, str(source), False)
            # a.txt and b.txt stay unprocessed (no run took them yet): a dozen polls, no new event
            assert await watch.next(timeout=0.6) is None
            (source / "c.txt").write_text("c")
            newer = await watch.next()
            assert newer is not None
            assert (newer["count"], newer["listed"], newer["sample"]) == (1, 3, ["c.txt"])
            # a changed file is a new version: announced again
            (source / "a.txt").write_text("a, longer now")
            changed = await watch.next()
            assert changed is not None
            assert changed["sample"] == ["a.txt"]
            assert await watch.next(timeout=0.3) is None
        finally:
            await watch.close()

    asyncio.run(scenario())


def test_processed_files_are_never_announced_and_a_run_with_nothing_new_is_harmless(
    tmp_path: Path, ledger_conn: str
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_text("a")
    flow = tracked_flow(source, ledger_conn)
    assert flow.execute(context())["files_processed"] == 1
    memory = FileMemory(recheck_interval=None)
    spec = spec_for(source, ledger_conn)
    assert memory.poll(spec, now=0) == (1, [], False)
    (source / "b.txt").write_text("b")
    listed, new, _ = memory.poll(spec, now=1)
    assert (listed, names(new)) == (2, ["b.txt"])
    # the run the event starts processes b.txt; a second run queued meanwhile finds nothing
    assert flow.execute(context())["files_processed"] == 1
    nothing = flow.execute(context())
    assert (nothing["files_processed"], nothing["files_failed"]) == (0, 0)
    assert memory.poll(spec, now=2)[1] == []


def test_recheck_re_announces_files_still_unprocessed_once_per_interval(
    tmp_path: Path, ledger_conn: str
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for name in ("crashed.txt", "failed.txt", "done.txt"):
        (source / name).write_text(name)
    spec = spec_for(source, ledger_conn)
    memory = FileMemory(recheck_interval=10)
    assert names(memory.poll(spec, now=0)[1]) == ["crashed.txt", "done.txt", "failed.txt"]
    # a run claims all three: done.txt is done, failed.txt failed (retried by the next run),
    # crashed.txt stays claimed by a run that died (its lease has expired)
    ledger = spec.ledger
    assert ledger is not None
    files = {f.relative_path: f for f in spec.location.list_files(spec.selection)}
    assert len(ledger.claim(list(files.values()), "run-1", lease_seconds=-1)) == 3
    ledger.done(files["done.txt"], "run-1", outputs=[])
    ledger.failed(files["failed.txt"], "run-1", "boom")
    assert memory.poll(spec, now=5) == (3, [], False)  # no storm for files that failed
    (source / "late.txt").write_text("late")
    assert names(memory.poll(spec, now=9)[1]) == ["late.txt"]
    listed, again, recheck = memory.poll(spec, now=10)
    assert (listed, names(again), recheck) == (4, ["crashed.txt", "failed.txt"], True)  # late.txt: 1 s ago
    assert memory.poll(spec, now=15)[1] == []
    assert names(memory.poll(spec, now=20)[1]) == ["crashed.txt", "failed.txt", "late.txt"]
    # a file rewound in the ledger (processed again on purpose) is found by the recheck too
    memory = FileMemory(recheck_interval=10)
    memory.poll(spec, now=0)
    assert ledger.forget(pattern="done.txt", reason="rewind") == 1
    assert memory.poll(spec, now=5)[1] == []
    assert "done.txt" in names(memory.poll(spec, now=10)[1])


def test_files_a_live_run_holds_are_not_announced(tmp_path: Path, ledger_conn: str) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_text("a")
    spec = spec_for(source, ledger_conn)
    assert spec.ledger is not None
    spec.ledger.claim(spec.location.list_files(spec.selection), "busy-run", lease_seconds=3600)
    memory = FileMemory(recheck_interval=10)
    assert memory.poll(spec, now=0)[1] == []
    assert memory.poll(spec, now=10)[1] == []  # still held at the recheck


def test_a_missing_source_is_retried_until_it_appears(tmp_path: Path, ledger_conn: str) -> None:
    source = tmp_path / "later"

    async def scenario() -> None:
        watch = Watch(trigger_for(source, ledger_conn, poll_interval=0.01))
        try:
            assert await watch.next(timeout=0.3) is None  # failing polls: logged, no event, no end
            source.mkdir()
            (source / "a.txt").write_text("a")
            event = await watch.next()
            assert event is not None
            assert event["sample"] == ["a.txt"]
        finally:
            await watch.close()

    asyncio.run(scenario())


def test_deleted_files_are_forgotten(tmp_path: Path, ledger_conn: str) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_text("a")
    spec = spec_for(source, ledger_conn)
    memory = FileMemory(recheck_interval=None)
    assert names(memory.poll(spec, now=0)[1]) == ["a.txt"]
    (source / "a.txt").unlink()
    assert memory.poll(spec, now=1) == (0, [], False)
    assert memory.seen == {}
    (source / "a.txt").write_text("a")  # the same content again, landed anew
    os.utime(source / "a.txt", (1, 1))
    assert names(memory.poll(spec, now=2)[1]) == ["a.txt"]


# -- serialization: what the dag-processor stores and the triggerer rebuilds ------------------------


def encoded(trigger: ByoNewFilesEventTrigger) -> tuple[str, dict[str, Any]]:
    """``(classpath, kwargs)`` as the dag-processor encodes a DAG's watcher trigger."""
    from airflow.serialization.encoders import encode_trigger

    data = encode_trigger(trigger)
    return data["classpath"], data["kwargs"]


def _stored_and_rebuilt(trigger: ByoNewFilesEventTrigger) -> tuple[dict[str, Any], ByoNewFilesEventTrigger]:
    """The kwargs as the dag-processor stores them, and the trigger the triggerer builds from them."""
    from airflow.models.trigger import Trigger
    from airflow.serialization.decoders import smart_decode_trigger_kwargs

    stored = Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(encoded(trigger)[1]))
    rebuilt = ByoNewFilesEventTrigger(**{k: smart_decode_trigger_kwargs(v) for k, v in stored.items()})
    return stored, rebuilt


def test_serialization_round_trip_and_a_stable_hash(tmp_path: Path) -> None:
    from airflow.triggers.base import BaseEventTrigger

    def asset(**kwargs: Any) -> Any:
        return new_files_asset(str(tmp_path), flow_id=FLOW, include=["*.csv"], **kwargs)

    trigger = asset(modified_after="2024-05-01T00:00:00", max_size=10).watchers[0].trigger
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_byo.triggers.new_files.ByoNewFilesEventTrigger"
    stored, rebuilt = _stored_and_rebuilt(trigger)
    assert BaseEventTrigger.hash(classpath, stored) == BaseEventTrigger.hash(*encoded(trigger))
    assert rebuilt.serialize() == (classpath, kwargs)
    assert NewFiles.from_kwargs(rebuilt.new_files) == NewFiles.from_kwargs(trigger.new_files)
    assert NewFiles.from_kwargs(rebuilt.new_files).selection.max_size == 10

    # the dag-processor compares the DAG's watcher with the stored trigger by this hash: equal
    # at every parse (the trigger keeps running, with its memory), different when a knob changes
    def hash_of(watched: Any) -> int:
        return BaseEventTrigger.hash(*encoded(watched.watchers[0].trigger))

    assert hash_of(asset()) == hash_of(asset())
    assert hash_of(asset()) != hash_of(asset(poll_interval=1))
    other = new_files_asset(str(tmp_path), flow_id="other.flow", include=["*.csv"])
    assert hash_of(asset()) != hash_of(other)


def test_bad_kwargs_fail_the_trigger_as_the_triggerer_expects(tmp_path: Path) -> None:
    # The triggerer fails only this trigger on a TypeError; anything else would stop its runner.
    with pytest.raises(TypeError, match=r"poll_interval must be a number of seconds > 0, got -1"):
        ByoNewFilesEventTrigger({"source": str(tmp_path), "flow_id": FLOW}, poll_interval=-1)
