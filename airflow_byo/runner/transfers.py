"""
Getting inputs to the child: each claimed file is staged locally, a few downloads ahead.

Remote inputs are downloaded up to ``job_config.transfer_concurrency`` files ahead of the one the
child works on, so the network and the child overlap and local disk use stays bounded by that
many files; local inputs are hard-linked (or copied) into the pipeline's input folder as their turn
comes, so the child sees the files of its task and nothing else of the source.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_byo.faults import crash_point

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from concurrent.futures import ThreadPoolExecutor

    from airflow_byo.runtime.protocol import FileRequest
    from airflow_byo.storage.location import Location, SourceFile, StagedInput

__all__ = ["FetchedFile", "fetch_ahead", "fetch_numbered", "stage_now"]


@dataclass
class FetchedFile:
    """One claimed file on its way to the child: its place in the run and its local copy."""

    seq: int
    file: SourceFile
    staged: Future[StagedInput]

    def request(self) -> FileRequest:
        """The child's request for this file (waits for the download; raises its error)."""
        staged = self.staged.result()
        return {
            "op": "file",
            "seq": self.seq,
            "path": staged.path,
            "url": self.file.url,
            "name": self.file.name,
            "relative_path": self.file.relative_path,
            "size": self.file.size,
            "out_prefix": "",  # the child process says where (its own drop folder)
        }


def stage_now(
    source: Location, file: SourceFile, staging_dir: str, owner: tuple[int, int] | None = None
) -> Future[StagedInput]:
    """Stage ``file`` in this thread; the future holds the copy or the storage error."""
    staged: Future[StagedInput] = Future()
    try:
        staged.set_result(source.stage(file, staging_dir, owner))
    except Exception as exc:  # noqa: BLE001 - reported when the file's turn comes
        staged.set_exception(exc)
    return staged


def _download(
    source: Location, file: SourceFile, staging_dir: str, owner: tuple[int, int] | None
) -> StagedInput:
    staged = source.stage(file, staging_dir, owner)
    crash_point("downloaded")
    return staged


def fetch_ahead(
    transfers: ThreadPoolExecutor,
    source: Location,
    files: Iterable[SourceFile],
    staging_dir: str,
    depth: int,
    owner: tuple[int, int] | None = None,
) -> Iterator[FetchedFile]:
    """Yield each of ``files`` with a future of its local copy, keeping ``depth`` downloads ahead."""
    return fetch_numbered(transfers, source, enumerate(files), staging_dir, depth, owner)


def fetch_numbered(
    transfers: ThreadPoolExecutor,
    source: Location,
    files: Iterable[tuple[int, SourceFile]],
    staging_dir: str,
    depth: int,
    owner: tuple[int, int] | None = None,
) -> Iterator[FetchedFile]:
    """
    :func:`fetch_ahead` of files numbered by the caller: several children of one run take
    their files from one shared sequence, each file keeping its place in the run.
    """
    window: deque[FetchedFile] = deque()
    for seq, file in files:
        if source.is_local:  # a link (or a copy) now: nothing to download
            yield FetchedFile(seq, file, stage_now(source, file, staging_dir, owner))
            continue
        staged = transfers.submit(_download, source, file, staging_dir, owner)
        window.append(FetchedFile(seq, file, staged))
        if len(window) > depth:
            yield window.popleft()
    while window:
        yield window.popleft()
