"""
ByoS3EventsTrigger (airflow_byo.triggers.s3_events) against a real moto server on 127.0.0.1: the
bucket's S3 event notifications land in an SQS queue on the same server, and the trigger's own
``run()`` reads them on an event loop, with a real ledger (SQLite). What a message is worth:
announced once if it names an unprocessed file of the flow's source, dropped otherwise (a
duplicate, a processed file, a key outside the source or its filters, a malformed body: logged),
and deleted either way; a lost message is backfilled by the recheck listing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_byo import new_files_asset
from airflow_byo.new_files import NewFiles
from airflow_byo.storage import FileFilter
from airflow_byo.triggers.s3_events import ByoS3EventsTrigger, EventMemory
from tests.s3_event_queue import EventQueue, s3_event
from tests.servers import S3Server
from tests.triggers.test_new_files import Watch

FLOW = "dag.flow"


@pytest.fixture
def queue(s3_server: S3Server) -> EventQueue:
    """A bucket of its own whose ObjectCreated events go to a queue of its own."""
    name = f"byo-events-{uuid.uuid4().hex[:10]}"
    queue = EventQueue(s3_server, name, name)
    queue.notify()  # S3 sends an s3:TestEvent now: the trigger drops it
    return queue


@pytest.fixture
def aws(s3_server: S3Server, connections: Any) -> str:
    return str(connections("byo_s3_events", s3_server.connection()))


@pytest.fixture
def ledger(tmp_path: Path, connections: Any) -> str:
    return str(connections("byo_events_ledger", {"conn_type": "sqlite", "host": str(tmp_path / "ledger.db")}))


def spec_for(queue: EventQueue, aws: str, ledger: str) -> NewFiles:
    """The flow: the ``*.csv`` files under ``s3://<bucket>/in``."""
    selection = FileFilter(include=("*.csv",))
    return NewFiles(f"s3://{queue.bucket}/in", FLOW, aws, selection=selection, ledger_conn_id=ledger)


def trigger_for(queue: EventQueue, spec: NewFiles, **kwargs: Any) -> ByoS3EventsTrigger:
    events = {"sqs_queue": queue.url, "aws_conn_id": spec.source_conn_id, "wait_time_seconds": 1}
    return ByoS3EventsTrigger(spec.to_kwargs(), events, **kwargs)


def watching(trigger: ByoS3EventsTrigger, scenario: Callable[[Watch], Awaitable[None]]) -> None:
    """Run ``scenario`` with the trigger's ``run()`` going; the trigger is stopped afterwards."""

    async def main() -> None:
        watch = Watch(trigger)  # type: ignore[arg-type]  # any trigger's run() will do
        try:
            await scenario(watch)
        finally:
            await watch.close()

    asyncio.run(main())


async def drained(queue: EventQueue, timeout: float = 10.0) -> bool:
    """Whether the queue is empty (every message deleted) within ``timeout``."""
    for _ in range(int(timeout / 0.1)):
        if await asyncio.to_thread(queue.left) == 0:
            return True
        await asyncio.sleep(0.1)
    return False


def mark_processed(spec: NewFiles, name: str) -> None:
    """Record ``name`` as processed in the flow's ledger, as a finished run would."""
    assert spec.ledger is not None
    (file,) = [f for f in spec.location.list_files(spec.selection) if f.relative_path == name]
    assert spec.ledger.claim([file], "run-1", lease_seconds=60) == [file]
    spec.ledger.done(file, "run-1", outputs=[])


def test_a_put_is_announced_once_and_what_is_not_new_is_dropped(
    queue: EventQueue, aws: str, ledger: str
) -> None:
    spec = spec_for(queue, aws, ledger)

    async def scenario(watch: Watch) -> None:
        put = await asyncio.to_thread(queue.put, "in/a.csv", b"a")
        event = await watch.next()
        assert event == {
            "flow_id": FLOW,
            "source": spec.source,
            "count": 1,
            "listed": 1,
            "sample": ["a.csv"],
            "recheck": False,
        }
        # a duplicated message (SQS delivers at least once), keys outside the source or its filters
        queue.send(s3_event(queue.bucket, "in/a.csv", 1, put["ETag"]))
        for key in ("in/skip.txt", "out/b.csv", "in/.byo-tmp.csv", "in/folder/"):
            await asyncio.to_thread(queue.put, key, b"b")
        assert await watch.next(timeout=2) is None
        assert await drained(queue)
        # a message for a file the flow has processed (its own message was lost)
        await asyncio.to_thread(queue.put_losing_its_message, "in/done.csv", b"done")
        await asyncio.to_thread(mark_processed, spec, "done.csv")
        done = await asyncio.to_thread(queue.s3.head_object, Bucket=queue.bucket, Key="in/done.csv")
        queue.send(s3_event(queue.bucket, "in/done.csv", 4, done["ETag"]))
        assert await watch.next(timeout=2) is None
        assert await drained(queue)
        # still watching: the next file, in a sub-folder and with a name S3 encodes, is announced
        await asyncio.to_thread(queue.put, "in/2024/my file+1.csv", b"c")
        event = await watch.next()
        assert event is not None
        assert (event["count"], event["sample"]) == (1, ["2024/my file+1.csv"])

    watching(trigger_for(queue, spec), scenario)


def test_a_lost_message_is_backfilled_by_the_recheck_listing(
    queue: EventQueue, aws: str, ledger: str
) -> None:
    spec = spec_for(queue, aws, ledger)

    async def scenario(watch: Watch) -> None:
        await asyncio.to_thread(queue.put, "in/a.csv", b"a")
        event = await watch.next()
        assert event is not None
        assert (event["sample"], event["recheck"]) == (["a.csv"], False)
        await asyncio.to_thread(mark_processed, spec, "a.csv")
        await asyncio.to_thread(queue.put_losing_its_message, "in/lost.csv", b"lost")
        event = await watch.next()  # the recheck listing, within a second or two
        assert event is not None
        assert (event["count"], event["listed"], event["sample"], event["recheck"]) == (
            1,
            2,
            ["lost.csv"],
            True,
        )

    watching(trigger_for(queue, spec, recheck_interval=1.0), scenario)

    async def restarted(watch: Watch) -> None:  # a new start lists at once: lost.csv is unprocessed
        event = await watch.next()
        assert event is not None
        assert (event["sample"], event["recheck"]) == (["lost.csv"], False)

    watching(trigger_for(queue, spec, recheck_interval=None), restarted)


def test_malformed_messages_are_logged_deleted_and_survived(
    queue: EventQueue, aws: str, ledger: str, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = spec_for(queue, aws, ledger)

    async def scenario(watch: Watch) -> None:
        garbage = queue.send("garbage")
        empty = queue.send('{"Records": []}')
        sized = queue.send({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}]})
        assert await watch.next(timeout=2) is None
        await asyncio.to_thread(queue.put, "in/a.csv", b"a")
        event = await watch.next()
        assert event is not None
        assert event["sample"] == ["a.csv"]
        assert await watch.next(timeout=1) is None  # the trigger deletes after handing the event over
        assert await drained(queue)
        tail = f"It is deleted; a file it was about is found by the next listing of {spec.source}."
        logged = [line for line in capfd.readouterr().out.splitlines() if "Dropped message" in line]
        expected = [
            f"Dropped message {garbage} of SQS queue {queue.url}: not an S3 event notification (not JSON "
            f"(Expecting value: line 1 column 1 (char 0))); body 'garbage'. {tail}",
            f"Dropped message {empty} of SQS queue {queue.url}: not an S3 event notification (no 'Records' "
            "list of S3 events (nor an SNS, EventBridge or S3 test message)); body '{\"Records\": []}'. "
            + tail,
            f"Dropped message {sized} of SQS queue {queue.url}: not an S3 event notification (record 1: "
            's3.object is missing); body \'{"Records": [{"eventName": "ObjectCreated:Put", "s3": '
            '{"bucket": {"name": "b"}}}]}\'. ' + tail,
        ]
        assert len(logged) == len(expected)  # one line each, a warning of the trigger's log
        for line, message in zip(logged, expected, strict=True):
            assert f"[warning  ] {message} [airflow_byo.triggers.s3_events.ByoS3EventsTrigger]" in line

    watching(trigger_for(queue, spec), scenario)


def test_a_message_the_ledger_could_not_check_stays_in_the_queue(
    queue: EventQueue, aws: str, tmp_path: Path, connections: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    broken = connections(
        "byo_broken_ledger", {"conn_type": "sqlite", "host": str(tmp_path / "no" / "ledger.db")}
    )
    spec = spec_for(queue, aws, broken)

    async def scenario(watch: Watch) -> None:
        await asyncio.to_thread(queue.put, "in/a.csv", b"a")
        assert await watch.next(timeout=3) is None
        assert f"Cannot read S3 events of flow {FLOW} from SQS queue {queue.url}" in capfd.readouterr().out
        # received, not deleted: they come back after the visibility timeout (the put's message, and
        # S3's test message of the fixture, received in the same batch: a batch is handled as one)
        assert await asyncio.to_thread(queue.left) == 2

    watching(trigger_for(queue, spec), scenario)


def test_a_burst_is_announced_in_few_events(queue: EventQueue, aws: str, ledger: str) -> None:
    spec = spec_for(queue, aws, ledger)

    async def scenario(watch: Watch) -> None:
        names = [f"f{number:02d}.csv" for number in range(25)]
        for name in names:
            await asyncio.to_thread(queue.put, f"in/{name}", name.encode())
        counts = []
        while sum(counts) < len(names):
            event = await watch.next()
            assert event is not None
            counts.append(event["count"])
        assert sum(counts) == len(names)
        assert await watch.next(timeout=1) is None

    watching(trigger_for(queue, spec), scenario)


# -- EventMemory, without a loop --------------------------------------------------------------------


def test_event_memory_checks_each_file_once_until_the_recheck(tmp_path: Path, ledger: str) -> None:
    from airflow_byo.storage.location import SourceFile

    spec = NewFiles("s3://bucket/in", FLOW, selection=FileFilter(include=("*.csv",)), ledger_conn_id=ledger)
    a, b = (SourceFile(f"s3://bucket/in/{n}", n, 1, None, f"etag-{n}") for n in ("a.csv", "b.csv"))
    memory = EventMemory(recheck_interval=10)
    assert memory.check(spec, [a, a, b], now=0) == [a, b]
    assert memory.check(spec, [a], now=1) == []  # a duplicate
    changed = SourceFile(a.url, a.relative_path, 2, None, "etag-2")
    assert memory.check(spec, [changed], now=2) == [changed]  # a new version is new
    assert memory.check(spec, [b], now=12) == [b]  # forgotten after the interval: checked again
    assert set(memory.seen) == {("b.csv", "etag:etag-b.csv")}  # a's entries pruned


# -- serialization: what the dag-processor stores and the triggerer rebuilds ------------------------


def test_serialization_round_trip_and_a_stable_hash() -> None:
    from airflow.models.trigger import Trigger
    from airflow.serialization.decoders import smart_decode_trigger_kwargs
    from airflow.serialization.encoders import encode_trigger
    from airflow.triggers.base import BaseEventTrigger

    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/landing"

    def asset(**events: Any) -> Any:
        return new_files_asset(
            "s3://landing/in", flow_id=FLOW, source_conn_id="aws_landing", events={"sqs_queue": url, **events}
        )

    def encoded(watched: Any) -> tuple[str, dict[str, Any]]:
        data = encode_trigger(watched.watchers[0].trigger)
        return data["classpath"], data["kwargs"]

    trigger = asset().watchers[0].trigger
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_byo.triggers.s3_events.ByoS3EventsTrigger"
    assert kwargs["events"] == {
        "sqs_queue": url,
        "aws_conn_id": "aws_landing",
        "region_name": None,
        "wait_time_seconds": 20,
        "max_messages": 10,
        "visibility_timeout": None,
    }
    stored = Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(encoded(asset())[1]))
    rebuilt = ByoS3EventsTrigger(**{k: smart_decode_trigger_kwargs(v) for k, v in stored.items()})
    assert rebuilt.serialize() == (classpath, kwargs)
    assert BaseEventTrigger.hash(classpath, stored) == BaseEventTrigger.hash(*encoded(asset()))
    assert BaseEventTrigger.hash(*encoded(asset())) == BaseEventTrigger.hash(*encoded(asset()))
    assert BaseEventTrigger.hash(*encoded(asset())) != BaseEventTrigger.hash(
        *encoded(asset(wait_time_seconds=5))
    )


@pytest.mark.parametrize(
    ("new_files", "events", "message"),
    [
        (
            {"source": "/data/in"},
            {"sqs_queue": "https://q"},
            r"S3 events need an S3 source: '/data/in' is not an S3",
        ),
        ({"source": "s3://b/in"}, {"sqs_queue": "q"}, r"events.sqs_queue must be the URL"),
        (
            {"source": "s3://b/in"},
            {"sqs_queue": "https://q", "max_messages": 0},
            r"events.max_messages must be",
        ),
    ],
)
def test_bad_kwargs_fail_the_trigger_as_the_triggerer_expects(
    new_files: dict[str, Any], events: dict[str, Any], message: str
) -> None:
    # The triggerer fails only this trigger on a TypeError; anything else would stop its runner.
    with pytest.raises(TypeError, match=message):
        ByoS3EventsTrigger({"flow_id": FLOW, **new_files}, events)
    with pytest.raises(TypeError, match=r"recheck_interval must be a number of seconds > 0 or None"):
        ByoS3EventsTrigger(
            {"flow_id": FLOW, "source": "s3://b/in"}, {"sqs_queue": "https://q"}, recheck_interval=0
        )
