"""
airflow_byo.s3_events: what an SQS message body says about created S3 objects (every shape S3,
SNS and EventBridge send, and the bodies that are none of them), where an object lies relative to
a flow's source, and the ``events`` settings of new_files_asset.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_byo.s3_events import (
    CreatedObject,
    MalformedEvent,
    Notification,
    check_events,
    parse_message,
    relative_key,
    split_s3_url,
)

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/landing"


def record(key: str, *, name: str = "ObjectCreated:Put", size: Any = 5, **extra: Any) -> dict[str, Any]:
    """One record as S3 writes it (the key already URL-encoded by the caller)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-1",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": "landing", "arn": "arn:aws:s3:::landing"},
            "object": {"key": key, "size": size, "eTag": "0cc175b9c0f1b6a831c399e269772661", **extra},
        },
    }


def body(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def test_an_object_created_record() -> None:
    parsed = parse_message(body(record("in/a.csv")))
    assert parsed == Notification(
        (CreatedObject("landing", "in/a.csv", 5, "0cc175b9c0f1b6a831c399e269772661", 1714564800.0),)
    )


@pytest.mark.parametrize(
    "name",
    [
        "ObjectCreated:Put",
        "ObjectCreated:Post",
        "ObjectCreated:Copy",
        "ObjectCreated:CompleteMultipartUpload",
    ],
)
def test_every_object_created_event_creates(name: str) -> None:
    assert [c.key for c in parse_message(body(record("in/a.csv", name=name))).created] == ["in/a.csv"]


def test_keys_are_url_decoded_as_s3_encodes_them() -> None:
    # S3 form-encodes keys: "+" is a space, "%2B" a plus sign; moto also encodes "/" as "%2F"
    parsed = parse_message(body(record("in/my+file%2B1%25.csv"), record("in%2Fsub%2Fb+c.csv")))
    assert [c.key for c in parsed.created] == ["in/my file+1%.csv", "in/sub/b c.csv"]


def test_several_records_and_other_events_in_one_message() -> None:
    parsed = parse_message(
        body(
            record("in/a.csv"),
            record("in/old.csv", name="ObjectRemoved:Delete"),
            record("in/b.csv", name="ObjectCreated:Copy"),
            record("in/c.csv", name="ObjectRestore:Completed"),
        )
    )
    assert [c.key for c in parsed.created] == ["in/a.csv", "in/b.csv"]
    assert parsed.skipped == 2


def test_quoted_etags_and_a_missing_etag() -> None:
    quoted = parse_message(body(record("in/a.csv", eTag='"abc-2"'))).created[0]
    assert quoted.etag == "abc-2"
    without = record("in/a.csv")
    del without["s3"]["object"]["eTag"]
    assert parse_message(body(without)).created[0].etag is None


def test_the_s3_test_event_creates_nothing() -> None:
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-05-01T12:00:00.000Z"}
    assert parse_message(json.dumps(test_event)) == Notification()


def test_an_sns_envelope_is_opened() -> None:
    envelope = {
        "Type": "Notification",
        "TopicArn": "arn:aws:sns:eu-west-1:1:landing",
        "Message": body(record("in/a.csv")),
    }
    assert [c.key for c in parse_message(json.dumps(envelope)).created] == ["in/a.csv"]
    test_event = {"Type": "Notification", "Message": json.dumps({"Event": "s3:TestEvent"})}
    assert parse_message(json.dumps(test_event)) == Notification()


def test_eventbridge_object_created_and_other_detail_types() -> None:
    event = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2024-05-01T12:00:00Z",
        "detail": {
            "bucket": {"name": "landing"},
            "object": {"key": "in/my file+1.csv", "size": 7, "etag": "abc"},  # not encoded here
        },
    }
    assert parse_message(json.dumps(event)) == Notification(
        (CreatedObject("landing", "in/my file+1.csv", 7, "abc", 1714564800.0),)
    )
    deleted = event | {"detail-type": "Object Deleted"}
    assert parse_message(json.dumps(deleted)) == Notification(skipped=1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", r"^not JSON \(Expecting value: line 1 column 1 \(char 0\)\)$"),
        ("", r"^not JSON"),
        ("[1, 2]", r"^a JSON list, not an object$"),
        (
            '{"Records": []}',
            r"^no 'Records' list of S3 events \(nor an SNS, EventBridge or S3 test message\)$",
        ),
        ('{"hello": "world"}', r"^no 'Records' list of S3 events"),
        ('{"Type": "Notification", "Message": "{oops"}', r"^an SNS notification whose Message is not JSON"),
        (body({"eventName": "ObjectCreated:Put"}), r"^record 1: s3 is missing$"),
        (body(record("in/a.csv"), "x"), r"^record 2 is not an object$"),
        (body({"s3": {}}), r"^record 1: eventName is missing$"),
        (
            body(record("a") | {"eventSource": "aws:sqs"}),
            r"^record 1: eventSource is 'aws:sqs', not 'aws:s3'$",
        ),
        (body(record("")), r"^record 1: s3.object.key is missing$"),
        (body(record("a", size=None)), r"^record 1: s3.object.size is missing$"),
        (body(record("a", size="5")), r"^record 1: s3.object.size is '5', not a number of bytes$"),
        (body(record("a", size=-1)), r"^record 1: s3.object.size is -1, not a number of bytes$"),
        (body(record("a") | {"eventTime": "noon"}), r"^record 1: eventTime 'noon' is not an ISO date/time$"),
        (
            json.dumps(
                {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}}
            ),
            r"^EventBridge event: detail.object is missing$",
        ),
    ],
)
def test_malformed_bodies_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(MalformedEvent, match=message):
        parse_message(text)


def test_the_bucket_record_is_checked_too() -> None:
    missing_bucket = record("in/a.csv")
    del missing_bucket["s3"]["bucket"]
    with pytest.raises(MalformedEvent, match=r"^record 1: s3.bucket is missing$"):
        parse_message(body(missing_bucket))


# -- where an object lies relative to a flow's source -----------------------------------------------


def created(key: str, bucket: str = "landing") -> CreatedObject:
    return CreatedObject(bucket, key, 1, None, None)


def test_split_s3_url() -> None:
    assert split_s3_url("s3://landing/in/orders/") == ("landing", "in/orders")
    assert split_s3_url("s3a://landing") == ("landing", "")
    for url in ("/data/in", "sftp://host/in", "s3://", "s3:///"):
        with pytest.raises(ValueError, match=r"is not an S3 URL such as s3://bucket/prefix"):
            split_s3_url(url)


def test_relative_key() -> None:
    assert relative_key(created("in/a.csv"), "landing", "in") == "a.csv"
    assert relative_key(created("in/2024/a.csv"), "landing", "in") == "2024/a.csv"
    assert relative_key(created("in/2024/a.csv"), "landing", "in", recursive=False) is None
    assert relative_key(created("a.csv"), "landing", "") == "a.csv"
    assert relative_key(created("inbox/a.csv"), "landing", "in") is None  # a prefix is a folder
    assert relative_key(created("out/a.csv"), "landing", "in") is None
    assert relative_key(created("in/a.csv", bucket="other"), "landing", "in") is None
    assert relative_key(created("in/folder/"), "landing", "in") is None  # a folder marker
    assert relative_key(created("in/"), "landing", "in") is None


# -- the events settings ----------------------------------------------------------------------------


def test_events_are_completed_with_defaults() -> None:
    assert check_events({"sqs_queue": QUEUE}, aws_conn_id="aws_landing") == {
        "sqs_queue": QUEUE,
        "aws_conn_id": "aws_landing",
        "region_name": None,
        "wait_time_seconds": 20,
        "max_messages": 10,
        "visibility_timeout": None,
    }
    given = {"sqs_queue": QUEUE, "aws_conn_id": None, "wait_time_seconds": 2, "visibility_timeout": 60}
    settings = check_events(given, aws_conn_id="aws_landing")
    assert (settings["aws_conn_id"], settings["wait_time_seconds"], settings["visibility_timeout"]) == (
        None,
        2,
        60,
    )
    assert check_events(settings) == settings  # as the trigger gets them back from the trigger table


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ("queue", r"^events must be a dict such as \{'sqs_queue': 'https://sqs"),
        ({}, r"^events.sqs_queue must be the URL of the SQS queue .* got None$"),
        ({"sqs_queue": "landing"}, r"^events.sqs_queue must be the URL .* got 'landing'$"),
        (
            {"sqs_queue": QUEUE, "queue": "x"},
            r"^events: unknown key\(s\) queue; the keys are sqs_queue, aws_conn_id",
        ),
        (
            {"sqs_queue": QUEUE, "wait_time_seconds": 0},
            r"^events.wait_time_seconds must be a whole number from 1 to 20, got 0$",
        ),
        ({"sqs_queue": QUEUE, "wait_time_seconds": 2.5}, r"^events.wait_time_seconds must be a whole number"),
        (
            {"sqs_queue": QUEUE, "max_messages": 11},
            r"^events.max_messages must be a whole number from 1 to 10, got 11$",
        ),
        (
            {"sqs_queue": QUEUE, "visibility_timeout": -1},
            r"^events.visibility_timeout must be a whole number from 0",
        ),
        (
            {"sqs_queue": QUEUE, "aws_conn_id": ""},
            r"^events.aws_conn_id must be a non-empty string or None, got ''$",
        ),
    ],
)
def test_bad_events_are_named(events: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_events(events)
