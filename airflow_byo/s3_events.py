"""
S3 event notifications in an SQS queue: where a flow reads them (:func:`check_events`, the
``events`` of ``new_files_asset``) and what a message says (which objects of which bucket were
created).

Standard library only, and no I/O: the SQS trigger
(:class:`~airflow_byo.triggers.s3_events.ByoS3EventsTrigger`) hands each message body to
:func:`parse_message` and maps the objects to its flow's source with :func:`relative_key`.

The bodies understood (one SQS message each):

- **S3 -> SQS** (a bucket's notification configuration): ``{"Records": [{"eventSource": "aws:s3",
  "eventName": "ObjectCreated:Put", "eventTime": "...", "s3": {"bucket": {"name": ...}, "object":
  {"key": ..., "size": ..., "eTag": ...}}}, ...]}``. Keys are URL-encoded as in a form (``+`` is a
  space, ``%2B`` a plus sign, ``%2F`` may stand for ``/``). A message may hold several records.
- **S3 -> SNS -> SQS** (fan-out to several queues, without raw message delivery): the above as a
  JSON string in an SNS envelope ``{"Type": "Notification", "Message": "..."}``.
- **S3 -> EventBridge -> SQS**: ``{"source": "aws.s3", "detail-type": "Object Created", "detail":
  {"bucket": {"name": ...}, "object": {"key": ..., "size": ..., "etag": ...}}}``; keys are not encoded.
- **s3:TestEvent**, which S3 sends when a notification configuration is saved: nothing created.

Records of other events (``ObjectRemoved:*``, ``ObjectRestore:*``, other EventBridge detail
types) create nothing and are counted in :attr:`Notification.skipped`. Anything else raises
:class:`MalformedEvent`, whose message says what is wrong (the trigger logs it and drops the message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "EVENT_DEFAULTS",
    "CreatedObject",
    "MalformedEvent",
    "Notification",
    "check_events",
    "parse_message",
    "relative_key",
    "split_s3_url",
]

#: Schemes of S3 URLs (airflow_byo.filesystems.S3_PROTOCOLS, repeated: this module imports nothing of ours).
S3_SCHEMES = ("s3", "s3a", "s3n")


#: ``events`` of new_files_asset: every key and its default (``aws_conn_id``: the source's connection).
EVENT_DEFAULTS: dict[str, Any] = {
    "sqs_queue": None,
    "aws_conn_id": None,
    "region_name": None,
    "wait_time_seconds": 20,
    "max_messages": 10,
    "visibility_timeout": None,
}


def _whole(settings: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = settings[name]
    if value is None and name == "visibility_timeout":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"events.{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def check_events(events: Any, *, aws_conn_id: str | None = None) -> dict[str, Any]:
    """
    ``events`` complete (every key of :data:`EVENT_DEFAULTS`) and checked: the same dict at every
    parse of a DAG file, so the watcher's hash stays. ``aws_conn_id`` is the default connection.

    :raises ValueError: a missing, unknown or bad key, named (``events.<key>``); callers raise
        it as their own error (new_files_asset: ``ByoConfigError``).
    """
    example = "{'sqs_queue': 'https://sqs.<region>.amazonaws.com/<account>/<queue>'}"
    if not isinstance(events, dict):
        raise ValueError(f"events must be a dict such as {example}, got {events!r}")
    unknown = sorted(set(events) - set(EVENT_DEFAULTS))
    if unknown:
        raise ValueError(
            f"events: unknown key(s) {', '.join(map(str, unknown))}; the keys are {', '.join(EVENT_DEFAULTS)}"
        )
    settings = {**EVENT_DEFAULTS, "aws_conn_id": aws_conn_id, **events}
    queue = settings["sqs_queue"]
    if not isinstance(queue, str) or not queue.startswith(("https://", "http://")):
        raise ValueError(
            f"events.sqs_queue must be the URL of the SQS queue that receives the bucket's event "
            f"notifications, as in {example}, got {queue!r}"
        )
    for name in ("aws_conn_id", "region_name"):
        if settings[name] is not None and (not isinstance(settings[name], str) or not settings[name]):
            raise ValueError(f"events.{name} must be a non-empty string or None, got {settings[name]!r}")
    settings["wait_time_seconds"] = _whole(settings, "wait_time_seconds", 1, 20)
    settings["max_messages"] = _whole(settings, "max_messages", 1, 10)
    settings["visibility_timeout"] = _whole(settings, "visibility_timeout", 0, 43200)
    return settings


class MalformedEvent(ValueError):
    """A message body that is not an S3 event notification; the message says what is wrong."""


@dataclass(frozen=True)
class CreatedObject:
    """One object an ``ObjectCreated`` event names."""

    bucket: str
    key: str  #: decoded: the object's real key
    size: int
    etag: str | None  #: without quotes, as listings give it once stripped
    time: float | None  #: the event's time (seconds since the epoch), close to the object's LastModified


@dataclass(frozen=True)
class Notification:
    """What one message says: the objects created, and how many records were about something else."""

    created: tuple[CreatedObject, ...] = ()
    skipped: int = 0


def parse_message(body: str) -> Notification:
    """
    The objects one SQS message body says were created.

    :raises MalformedEvent: the body is not one of the shapes of the module docstring (the error
        names the part that is wrong, e.g. ``record 2: s3.object.size is missing``).
    """
    try:
        message = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"not JSON ({exc})") from None
    if isinstance(message, dict) and message.get("Type") == "Notification" and "Message" in message:
        try:  # an SNS envelope: the S3 event is its Message, a JSON string
            message = json.loads(message["Message"])
        except (TypeError, ValueError) as exc:
            raise MalformedEvent(f"an SNS notification whose Message is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise MalformedEvent(f"a JSON {type(message).__name__}, not an object")
    if message.get("Event") == "s3:TestEvent":
        return Notification()
    if message.get("source") == "aws.s3" and "detail-type" in message:
        return _eventbridge(message)
    records = message.get("Records")
    if not isinstance(records, list) or not records:
        raise MalformedEvent("no 'Records' list of S3 events (nor an SNS, EventBridge or S3 test message)")
    created = [_record(number, record) for number, record in enumerate(records, 1)]
    return Notification(tuple(c for c in created if c), sum(1 for c in created if c is None))


def _record(number: int, record: Any) -> CreatedObject | None:
    """An ``ObjectCreated:*`` record's object; ``None`` for a record of another S3 event."""
    where = f"record {number}"
    if not isinstance(record, dict):
        raise MalformedEvent(f"{where} is not an object")
    name = record.get("eventName")
    if not isinstance(name, str):
        raise MalformedEvent(f"{where}: eventName is missing")
    if record.get("eventSource", "aws:s3") != "aws:s3":
        raise MalformedEvent(f"{where}: eventSource is {record.get('eventSource')!r}, not 'aws:s3'")
    if not name.removeprefix("s3:").startswith("ObjectCreated:"):
        return None
    s3 = _object_at(record, "s3", where)
    bucket, found = _object_at(s3, "bucket", where, "s3."), _object_at(s3, "object", where, "s3.")
    key = _text(found, "key", f"{where}: s3.object.key")
    return CreatedObject(
        bucket=_text(bucket, "name", f"{where}: s3.bucket.name"),
        key=unquote_plus(key),
        size=_size(found.get("size"), f"{where}: s3.object.size"),
        etag=_etag(found.get("eTag")),
        time=_time(record.get("eventTime"), f"{where}: eventTime"),
    )


def _eventbridge(message: dict[str, Any]) -> Notification:
    if message["detail-type"] != "Object Created":
        return Notification(skipped=1)
    detail = _object_at(message, "detail", "EventBridge event")
    bucket = _object_at(detail, "bucket", "EventBridge event", "detail.")
    found = _object_at(detail, "object", "EventBridge event", "detail.")
    created = CreatedObject(
        bucket=_text(bucket, "name", "EventBridge event: detail.bucket.name"),
        key=_text(found, "key", "EventBridge event: detail.object.key"),  # not encoded here
        size=_size(found.get("size"), "EventBridge event: detail.object.size"),
        etag=_etag(found.get("etag")),
        time=_time(message.get("time"), "EventBridge event: time"),
    )
    return Notification((created,))


def _object_at(parent: dict[str, Any], name: str, where: str, path: str = "") -> dict[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise MalformedEvent(f"{where}: {path}{name} is missing")
    return value


def _text(parent: dict[str, Any], name: str, what: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{what} is missing")
    return value


def _size(value: Any, what: str) -> int:
    if value is None:
        raise MalformedEvent(f"{what} is missing")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEvent(f"{what} is {value!r}, not a number of bytes")
    return value


def _etag(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip('"') or None


def _time(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        raise MalformedEvent(f"{what} {value!r} is not an ISO date/time") from None


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")`` (``""``: the whole bucket)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in S3_SCHEMES or not rest.strip("/"):
        raise ValueError(f"{url!r} is not an S3 URL such as s3://bucket/prefix")
    bucket, _, prefix = rest.strip("/").partition("/")
    return bucket, prefix.strip("/")


def relative_key(created: CreatedObject, bucket: str, prefix: str, *, recursive: bool = True) -> str | None:
    """
    The path of ``created`` relative to the source ``s3://<bucket>/<prefix>``, as its listing names
    it; ``None`` when the object is not a file of that source (another bucket, outside the prefix,
    a folder marker ``.../``, or in a sub-folder of a source that is not listed recursively).
    """
    if created.bucket != bucket or created.key.endswith("/"):
        return None
    head = f"{prefix}/" if prefix else ""
    if not created.key.startswith(head):
        return None
    relative = created.key[len(head) :]
    if not relative or (not recursive and "/" in relative):
        return None
    return relative
