"""
Publishing behind the child: a processed file's outputs go to the destination while the child works
on the next file, and the file's result -- decided by :func:`~airflow_byo.results.file_result` once
publishing is over -- waits in a future until the runner settles it.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.results import file_result

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from airflow_byo.results import FileOutcome, FileResult
    from airflow_byo.runner.transfers import FetchedFile
    from airflow_byo.storage.publisher import Publisher

__all__ = ["Publishing", "publish_behind", "publishes_by_rename"]


@dataclass
class Publishing:
    """A processed file whose outputs may still be uploading; ``result`` holds its result when done."""

    item: FetchedFile
    outcome: FileOutcome
    result: Future[FileResult]


def publishes_by_rename(publisher: Publisher) -> bool:
    """Whether outputs are staged on the local destination's own file system (published by rename)."""
    if not publisher.destination.is_local:
        return False
    try:
        return os.stat(publisher.staging_dir).st_dev == os.stat(publisher.destination.url).st_dev
    except OSError:
        return False


def publish_behind(
    transfers: ThreadPoolExecutor,
    publisher: Publisher,
    item: FetchedFile,
    outcome: FileOutcome,
    *,
    at_once: bool = False,
) -> Publishing:
    """
    Start publishing one file's outputs: in a transfer thread, or in this thread when ``at_once``
    (a rename costs less than handing it to a thread, and the child is busy with the next file
    meanwhile). A failed file, or one whose output names clash (reserved run-wide: call it under
    the run's lock), has its result at once.
    """
    file = item.file
    clash = publisher.reserve(file.url, outcome.outputs) if outcome.ok else None
    if not outcome.ok or clash is not None:
        done: Future[FileResult] = Future()
        refused = ("OutputNameClash", clash) if clash is not None else None
        done.set_result(file_result(file.url, file.size, outcome, refused=refused))
        return Publishing(item, outcome, done)
    if not at_once:
        return Publishing(item, outcome, transfers.submit(_publish, publisher, item, outcome))
    published: Future[FileResult] = Future()
    published.set_result(_publish(publisher, item, outcome))
    return Publishing(item, outcome, published)


def _publish(publisher: Publisher, item: FetchedFile, outcome: FileOutcome) -> FileResult:
    """Publish one file's outputs; its result says how it went."""
    file = item.file
    try:
        urls = publisher.publish(outcome.outputs)
    except ByoStorageError as exc:
        return file_result(file.url, file.size, outcome, refused=("ByoStorageError", str(exc)))
    return file_result(file.url, file.size, outcome, published=urls)
