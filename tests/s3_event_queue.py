"""
An SQS queue receiving a bucket's S3 event notifications, on the moto server of
:class:`tests.servers.S3Server`: moto's server mode answers every AWS API on its one port, and its
S3 sends ``ObjectCreated`` notifications to its own SQS queues (moto/s3/notifications.py) when the
bucket has a notification configuration, as AWS does. Used by the trigger tests, the end-to-end
test and the latency benchmark (B8).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.servers import S3Server


class EventQueue:
    """
    Queue ``name`` on ``server``, sent the ``ObjectCreated:*`` events of ``bucket`` (created if
    missing) once :meth:`notify` saved the bucket's notification configuration.
    """

    def __init__(self, server: S3Server, bucket: str, name: str) -> None:
        import boto3

        access_key, secret_key = server.keys["admin"]
        self.sqs = boto3.client(
            "sqs",
            endpoint_url=server.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
        )
        self.s3 = server.client()
        self.bucket = bucket
        if bucket not in {b["Name"] for b in self.s3.list_buckets().get("Buckets", [])}:
            self.s3.create_bucket(Bucket=bucket)
        self.url: str = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        self.arn: str = attributes["Attributes"]["QueueArn"]

    def notify(self, *queues: EventQueue) -> None:
        """
        Have the bucket send its ``ObjectCreated:*`` events to this queue (and ``queues``); S3 sends
        an ``s3:TestEvent`` to each when the configuration is saved.
        """
        configurations = [{"QueueArn": q.arn, "Events": ["s3:ObjectCreated:*"]} for q in (self, *queues)]
        self.s3.put_bucket_notification_configuration(
            Bucket=self.bucket, NotificationConfiguration={"QueueConfigurations": configurations}
        )

    def put(self, key: str, body: bytes = b"x") -> dict[str, Any]:
        """Put an object (its notification lands in the queue at once); returns the put's answer."""
        return dict(self.s3.put_object(Bucket=self.bucket, Key=key, Body=body))

    def send(self, message: str | dict[str, Any]) -> str:
        """Send a message of our own (a duplicate, a malformed body...); returns its MessageId."""
        body = message if isinstance(message, str) else json.dumps(message)
        return str(self.sqs.send_message(QueueUrl=self.url, MessageBody=body)["MessageId"])

    def put_losing_its_message(self, key: str, body: bytes = b"x") -> None:
        """
        Put an object and delete its notification from the queue before any reader can receive it:
        the queue holds new messages back (``DelaySeconds``) while the object lands and is purged.
        """
        self.sqs.set_queue_attributes(QueueUrl=self.url, Attributes={"DelaySeconds": "900"})
        try:
            self.put(key, body)
            self.sqs.purge_queue(QueueUrl=self.url)
        finally:
            self.sqs.set_queue_attributes(QueueUrl=self.url, Attributes={"DelaySeconds": "0"})

    def left(self) -> int:
        """Messages still in the queue, received or not (deleted ones are gone)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)

    def receive(self, wait: int = 1) -> list[dict[str, Any]]:
        """Receive (and delete) what the queue holds now, for a test that reads it itself."""
        answer = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait, AttributeNames=["SentTimestamp"]
        )
        messages = list(answer.get("Messages", []))
        if messages:
            entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
        return messages

    def drain(self) -> int:
        """
        Receive and delete everything the queue holds now; how many. Unlike ``PurgeQueue``, which
        SQS (and moto) allow once a minute per queue, this can run as often as a benchmark needs.
        """
        drained = 0
        while batch := self.receive(wait=0):
            drained += len(batch)
        return drained


def s3_event(bucket: str, key: str, size: int, etag: str, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """The body S3 sends for one created object (the key URL-encoded as S3 does)."""
    from urllib.parse import quote_plus

    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag.strip('"')},
        },
    }
    return {"Records": [record]}
