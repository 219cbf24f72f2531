"""
The AssetWatcher's trigger that takes a flow's "new file" signals from S3 event notifications in
an SQS queue (``new_files_asset(..., events={"sqs_queue": ...})``): a file is announced about a
second after it lands, with no listing of the source every few seconds.

Why a ``BaseEventTrigger`` of ours, not Airflow's message-queue trigger. Read for it:
common.messaging 2.1.2 ``triggers/msg_queue.py`` (``MessageQueueTrigger``) and the amazon provider
9.39 ``queues/sqs.py`` (``SqsMessageQueueProvider``), ``triggers/sqs.py`` (``SqsSensorTrigger``):

- ``MessageQueueTrigger`` only picks a provider's trigger and delegates: its ``serialize()`` is the
  ``SqsSensorTrigger``'s, its ``run()`` yields that trigger's events.
- ``SqsSensorTrigger.run()`` receives up to ``max_messages``, deletes them on reception, before
  anything looked at them, yields **one** event with the whole batch of raw messages and returns;
  on an empty queue it sleeps ``waiter_delay`` (60 s by default) before it receives again. Its
  filters match a body literally or by a JSONPath: nothing there decodes an S3 key, applies the
  flow's prefix and file selection (globs, sizes, dates), or asks the flow's ledger whether a file
  was processed. Every batch would start a run: for processed files, for keys of other flows,
  for S3's ``s3:TestEvent``.
- ``SqsMessageQueueProvider.queue_matches`` accepts ``https://sqs.<region>.amazonaws.com/...``
  URLs only (``QUEUE_REGEXP``): the queue of an S3-compatible store (or of moto) is refused.
- Airflow 3.3's shared streams in ack mode (``BaseEventTrigger.create_shared_stream_producer``,
  ``triggers/shared_stream.py``) would delete a message only once the Asset event derived from it
  is stored. Not used (yet): the recheck listing would run inside one message's binding window,
  where a listing longer than ``[triggerer] shared_stream_ack_timeout`` (300 s; a bucket of
  millions of keys) fails the trigger, again at every start; and what it buys, at-least-once
  delivery of the *hint*, the ledger and the recheck listing already give for the *file* (below).

So: this trigger uses the amazon provider's :class:`~airflow.providers.amazon.aws.hooks.sqs.SqsHook`
async client (aiobotocore) and long-polls the queue (``WaitTimeSeconds``: a message is returned as
soon as it is sent, so the wait only sets what an idle queue costs: 20 s, SQS's maximum, is ~4,300
requests a day). It parses each message (:mod:`airflow_byo.s3_events`), keeps the objects of the
flow's source that pass its file selection, and asks the ledger which of them are unprocessed:
only those make an Asset event, with the polling watcher's payload. It never ends.

**The ledger stays the truth; a message is a hint.** Messages are deleted once handled: announced
(the event handed to the triggerer) or dropped (processed files, keys of other sources, other
events; a malformed body with one log line). Deleting before a run exists makes the delivery of
the *hint* at-most-once: a triggerer that dies between the delete and storing the Asset event
loses it. The *file* is still delivered at least once, as nothing about it is recorded until a run
processed it: the listing at each start of the trigger and the recheck listing every
``recheck_interval`` announce what is unprocessed and was not announced for that long (a lost
message, a failed or dead run), as the polling watcher's recheck does. Duplicated, reordered and
late messages cannot double-process a file: a run claims files in the ledger and takes only
unprocessed ones, and a file already checked (by a message or a listing) is not announced again
before the recheck. A message that could not be handled (the ledger unreachable) is not deleted:
the queue gives it again after its visibility timeout.

One queue per flow: every message received is deleted, also those for keys outside the source.
For several flows on one bucket, fan the notifications out (S3 -> an SNS topic -> a queue per
flow, or EventBridge rules) or give each flow a prefix of its own in the notification configuration.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_byo.exceptions import ByoConfigError, ByoNotFoundError
from airflow_byo.new_files import NewFiles
from airflow_byo.s3_events import MalformedEvent, check_events, parse_message, relative_key, split_s3_url
from airflow_byo.storage.location import SourceFile
from airflow_byo.triggers.new_files import DEFAULT_RECHECK_INTERVAL, FileMemory, announcement

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["ByoS3EventsTrigger", "EventMemory", "check_recheck_interval"]

#: Receives in a row while the queue returns full batches: up to 100 messages make one ledger
#: query and one Asset event when many files land at once.
DRAIN_RECEIVES = 10
#: Longest wait after failures in a row (the wait doubles from 2 s with each failure).
MAX_ERROR_BACKOFF = 300.0
#: How long a file named by a message is remembered without a recheck listing (bounded memory).
MEMORY_HORIZON = 3600.0


def check_recheck_interval(value: Any) -> float | None:
    """``recheck_interval`` of an events watcher: seconds > 0, or ``None`` (list at start only)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ByoConfigError(
            f"recheck_interval must be a number of seconds > 0 or None (never recheck), got {value!r}"
        )
    return float(value)


@dataclass
class EventMemory(FileMemory):
    """
    :class:`FileMemory` (the listing at start and every ``recheck_interval``) plus the files
    messages name: each is checked against the ledger once, until the next recheck. Entries older
    than the recheck interval (or :data:`MEMORY_HORIZON` without rechecks) are forgotten: the
    recheck treats them as unseen anyway, so memory stays bounded by what landed lately.
    """

    listed: bool = False
    next_prune: float = 0.0

    def listing_due(self, now: float) -> bool:
        return not self.listed or (self.next_recheck is not None and now >= self.next_recheck)

    def poll(self, spec: NewFiles, now: float | None = None) -> tuple[int, list[SourceFile], bool]:
        now = time.monotonic() if now is None else now
        try:
            result = super().poll(spec, now)
        except ByoNotFoundError:
            # An S3 prefix exists while it holds objects: none yet (or none left) lists nothing.
            self.seen.clear()
            self.next_recheck = None if self.recheck_interval is None else now + self.recheck_interval
            self.listed = True
            raise
        self.listed = True
        return result

    def check(self, spec: NewFiles, files: list[SourceFile], now: float | None = None) -> list[SourceFile]:
        """The files of ``files`` to announce: not checked before, unprocessed. Blocking (ledger)."""
        from airflow_byo.ledger.state import fingerprint

        now = time.monotonic() if now is None else now
        self._prune(now)
        fresh = {(f.relative_path, fingerprint(f)): f for f in files}
        fresh = {key: f for key, f in fresh.items() if key not in self.seen}
        if not fresh:
            return []
        _, new = spec.find(list(fresh.values()))
        self.seen.update(dict.fromkeys(fresh, now))
        return new

    def _prune(self, now: float) -> None:
        horizon = self.recheck_interval or MEMORY_HORIZON
        if now >= self.next_prune:
            self.seen = {key: seen for key, seen in self.seen.items() if seen > now - horizon}
            self.next_prune = now + horizon / 4


class ByoS3EventsTrigger(BaseEventTrigger):
    """
    Fire an event whenever S3 event notifications in an SQS queue name files of a flow's source
    that the flow has not processed yet; for an ``AssetWatcher`` (see
    :func:`airflow_byo.assets.new_files_asset`), never ends. See the module docstring for what a
    message is worth and when it is deleted.

    Failures (the queue or its connection, the ledger) are logged and retried, waiting twice as
    long after each failure in a row (at most 5 minutes); a failing listing is retried the same
    way while messages keep being received.

    :param new_files: :meth:`NewFiles.to_kwargs` of the flow's S3 source, filters and ledger.
    :param events: the queue and how to read it: :func:`check_events`'s keys.
    :param recheck_interval: seconds between two listings of the source that announce what is
        still unprocessed (what messages missed); ``None``: only the listing at each start.
    """

    def __init__(
        self,
        new_files: dict[str, Any],
        events: dict[str, Any],
        recheck_interval: float | None = DEFAULT_RECHECK_INTERVAL,
    ) -> None:
        super().__init__()
        self.new_files = new_files
        try:
            split_s3_url(str(new_files.get("source")))
        except ValueError as exc:
            raise TypeError(f"S3 events need an S3 source: {exc}") from None
        try:
            self.events = check_events(events)
            self.recheck_interval = check_recheck_interval(recheck_interval)
        except (ValueError, ByoConfigError) as exc:
            # The triggerer fails a trigger whose kwargs raise TypeError ("failed to inflate").
            raise TypeError(str(exc)) from None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            # Stored in Airflow's trigger table and hashed with the kwargs (docs/event-driven.md).
            "airflow_byo.triggers.s3_events.ByoS3EventsTrigger",
            {"new_files": self.new_files, "events": self.events, "recheck_interval": self.recheck_interval},
        )

    def _hook(self) -> Any:
        """The amazon provider's SQS hook: made in a thread, as its import takes a second."""
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook

        return SqsHook(aws_conn_id=self.events["aws_conn_id"], region_name=self.events["region_name"])

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = _Watch(self, EventMemory(self.recheck_interval))
        while True:
            try:
                hook = await asyncio.to_thread(self._hook)
                async with await hook.get_async_conn() as client:
                    async for event in watch.events(client):
                        yield event
            except Exception as exc:  # noqa: BLE001 - a watcher keeps watching; the log says why
                wait = watch.failed()
                self.log.warning(
                    "Cannot read S3 events of flow %s from SQS queue %s (failure %d in a row, next try in "
                    "%.0fs): %s",
                    self.new_files.get("flow_id"),
                    self.events["sqs_queue"],
                    watch.failures,
                    wait,
                    exc,
                )
                await asyncio.sleep(wait)


def _backoff(failures: int) -> float:
    return min(2.0**failures, MAX_ERROR_BACKOFF)


class _Watch:
    """One trigger's loop: its memory, failure counts and the queue calls (the client is run()'s)."""

    def __init__(self, trigger: ByoS3EventsTrigger, memory: EventMemory) -> None:
        self.trigger, self.memory, self.log = trigger, memory, trigger.log
        self.settings = trigger.events
        self.queue: str = trigger.events["sqs_queue"]
        self.failures = 0
        self.listing_failures = 0
        self.listing_retry = 0.0

    def failed(self) -> float:
        self.failures += 1
        return _backoff(self.failures)

    async def events(self, client: Any) -> AsyncIterator[TriggerEvent]:
        """Listings when due, then messages as they come; an exception ends it (run() retries)."""
        spec = NewFiles.from_kwargs(self.trigger.new_files)
        bucket, prefix = split_s3_url(spec.location.url)
        while True:
            if event := await self._listing(spec):
                yield event
            messages = await self._receive(client)
            if messages:
                files = self._files(spec, bucket, prefix, messages)
                new = await asyncio.to_thread(self.memory.check, spec, files) if files else []
                if new:
                    self.log.info(
                        "%d new file(s) of %d named by %d SQS message(s) for flow %s, e.g. %s",
                        len(new),
                        len(files),
                        len(messages),
                        spec.flow_id,
                        [f.relative_path for f in new[:3]],
                    )
                    yield announcement(spec, len(files), new, recheck=False)
                await self._delete(client, messages)
            self.failures = 0

    async def _listing(self, spec: NewFiles) -> TriggerEvent | None:
        """The listing at start or at a recheck, when due; a failure is logged and retried, never raised."""
        now = time.monotonic()
        if not self.memory.listing_due(now) or now < self.listing_retry:
            return None
        try:
            listed, new, recheck = await asyncio.to_thread(self.memory.poll, spec)
        except ByoNotFoundError as exc:
            self.log.info("Nothing listed for flow %s: %s. Its files come from S3 events.", spec.flow_id, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - messages keep coming meanwhile; the log says why
            self.listing_failures += 1
            wait = _backoff(self.listing_failures)
            self.listing_retry = time.monotonic() + wait
            self.log.warning(
                "Cannot list %s for files S3 events missed, flow %s (failure %d in a row, next try in "
                "%.0fs): %s",
                spec.source,
                spec.flow_id,
                self.listing_failures,
                wait,
                exc,
            )
            return None
        self.listing_failures = 0
        if not new:
            return None
        self.log.info(
            "%d unprocessed file(s) of %d listed in %s for flow %s%s, e.g. %s",
            len(new),
            listed,
            spec.source,
            spec.flow_id,
            " (at the recheck)" if recheck else "",
            [f.relative_path for f in new[:3]],
        )
        return announcement(spec, listed, new, recheck=recheck)

    async def _receive(self, client: Any) -> list[dict[str, Any]]:
        """Messages of one long poll; while the queue returns full batches, more at once."""
        size = self.settings["max_messages"]
        request: dict[str, Any] = {"QueueUrl": self.queue, "MaxNumberOfMessages": size}
        if self.settings["visibility_timeout"] is not None:
            request["VisibilityTimeout"] = self.settings["visibility_timeout"]
        wait = self.settings["wait_time_seconds"]
        messages: list[dict[str, Any]] = []
        for _ in range(DRAIN_RECEIVES):
            batch = (await client.receive_message(**request, WaitTimeSeconds=wait)).get("Messages", [])
            messages += batch
            if len(batch) < size:
                break
            wait = 0
        return messages

    def _files(
        self, spec: NewFiles, bucket: str, prefix: str, messages: list[dict[str, Any]]
    ) -> list[SourceFile]:
        """The files of the flow's source, passing its selection, that ``messages`` name."""
        files = []
        for message in messages:
            body = message.get("Body", "")
            try:
                notification = parse_message(body)
            except MalformedEvent as exc:
                self.log.warning(
                    "Dropped message %s of SQS queue %s: not an S3 event notification (%s); body %.200r. "
                    "It is deleted; a file it was about is found by the next listing of %s.",
                    message.get("MessageId"),
                    self.queue,
                    exc,
                    body,
                    spec.source,
                )
                continue
            for created in notification.created:
                relative = relative_key(created, bucket, prefix, recursive=spec.selection.recursive)
                if relative is not None and spec.selection.matches(relative, created.size, created.time):
                    url = spec.location.url_for(relative)
                    files.append(SourceFile(url, relative, created.size, created.time, created.etag))
        return files

    async def _delete(self, client: Any, messages: list[dict[str, Any]]) -> None:
        """Delete handled messages (10 per request, SQS's most); what fails comes back, harmlessly."""
        for start in range(0, len(messages), 10):
            entries = [
                {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                for number, message in enumerate(messages[start : start + 10])
            ]
            answer = await client.delete_message_batch(QueueUrl=self.queue, Entries=entries)
            if answer.get("Failed"):
                self.log.warning(
                    "Could not delete %d handled message(s) of SQS queue %s (%s): the queue gives them "
                    "again after its visibility timeout, and they are dropped then as already checked",
                    len(answer["Failed"]),
                    self.queue,
                    answer["Failed"][0].get("Message") or answer["Failed"][0].get("Code"),
                )
