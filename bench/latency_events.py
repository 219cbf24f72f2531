"""
B8's S3 events side (bench/latency.py): a flow on an S3 source scheduled on
``new_files_asset(..., events={"sqs_queue": ...})``, fed by moto's own S3 event notifications.

moto's server answers S3 and SQS on one port, and its S3 sends an ``ObjectCreated`` notification
to its SQS queues when the bucket has a notification configuration (moto/s3/notifications.py):
the bench puts objects and moto sends the events, as AWS would; nothing is fed by hand. The
bucket notifies two queues: the flow's, and an observer queue the bench reads itself, whose
``SentTimestamp`` says when the notification was in SQS (arrival -> message).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tests.s3_event_queue import EventQueue

if TYPE_CHECKING:
    from pathlib import Path

    from tests.e2e.deployment import Deployment

EVENTS = "bench_b8_events"
BUCKET = "bench-b8-events"


@dataclass
class Sample:
    """One file's trip: wall-clock seconds (time.time()), and when its notification was in SQS."""

    arrived: float
    output: float
    message: float | None = None

    @property
    def latency(self) -> float:
        return self.output - self.arrived


def wait_for(path: Path, timeout: float, what: Any) -> float:
    """Poll ``path`` every 20 ms until it exists; the time.time() it was seen."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"B8: no output {path} after {timeout:.0f}s\n{what()}")
        time.sleep(0.02)
    return time.time()


class EventsSide:
    """The flow's bucket, its queue and the observer queue, on the deployment's moto server."""

    def __init__(self, deployment: Deployment, outputs: Path) -> None:
        assert deployment.s3 is not None, "B8's events side needs the deployment's S3 server"
        self.deployment, self.outputs = deployment, outputs
        self.queue = EventQueue(deployment.s3, BUCKET, "bench-b8-flow")
        self.observer = EventQueue(deployment.s3, BUCKET, "bench-b8-observer")
        self.queue.notify(self.observer)
        self.observer.drain()  # S3's test message

    def dag_kwargs(self) -> dict[str, str]:
        """What the DAG file needs: the bucket, the queue, the connection."""
        return {"bucket": BUCKET, "queue": self.queue.url, "conn_id": self.deployment.s3_conn_id}

    def drop(self, name: str, *, timeout: float = 600) -> Sample:
        """Put ``name`` into the source and wait for its output; when was its notification in SQS."""
        arrived = time.time()  # before the put: the sample includes the upload (a few ms)
        self.queue.put(f"in/{name}", f"{name}\n".encode())
        output = wait_for(self.outputs / name, timeout, lambda: self.deployment.diagnostics(EVENTS))
        sent = [
            int(m["Attributes"]["SentTimestamp"]) / 1000
            for m in self.observer.receive(wait=0)
            if f"in%2F{name}" in m["Body"] or f"in/{name}" in m["Body"]
        ]
        return Sample(arrived, output, min(sent) if sent else None)

    def burst(self, count: int, *, timeout: float = 1800) -> tuple[float, int]:
        """
        ``count`` files put at once (8 at a time); seconds from the first put to the last output,
        and how many runs took them. Raises unless each was processed exactly once.
        """
        names = [f"burst-{number:05d}.txt" for number in range(count)]
        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda name: self.queue.put(f"in/{name}", f"{name}\n".encode()), names))
        last = max(
            wait_for(self.outputs / name, timeout, lambda: self.deployment.diagnostics(EVENTS))
            for name in names
        )
        self.observer.drain()  # the burst's notifications: the next sample reads its own
        done = self.deployment.ledger_events(f"{EVENTS}.flow", "done")
        twice = [name for name in names if done[name] != 1]
        if twice:
            raise RuntimeError(f"B8 burst: {len(twice)} files not processed exactly once, e.g. {twice[:5]}")
        runs = self.deployment.api.get(f"/api/v2/dags/{EVENTS}/dagRuns", params={"limit": 100})["dag_runs"]
        took = [r for r in runs if (timestamp(r.get("queued_at")) or 0) >= started]
        return last - started, len(took)


def timestamp(value: str | None) -> float | None:
    """An ISO time of Airflow's API as time.time() seconds."""
    return datetime.fromisoformat(value).timestamp() if value else None
