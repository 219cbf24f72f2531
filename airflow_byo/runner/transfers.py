"""
Getting inputs to the child: each claimed file is staged locally, a few downloads ahead.

Remote inputs are downloaded up to ``job_config.transfer_concurrency`` files ahead of the one the
child works on, so the network and the child overlap and local disk use stays bounded by that
many files; local inputs are read in place.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_byo.faults import crash_point

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from concurrent.futures import ThreadPoolExecutor

    from airflow_byo.runtime.protocol import FileRequest
    from airflow_byo.storage.location import Location, SourceFile, StagedInput

__all__ = ["FetchedFile", "fetch_ahead", "fetch_numbered", "stage_now"]


@dataclass
class FetchedFile:
    """One claimed file on its way to the child: its place in the run and its local copy."""

    seq: int
    file: SourceFile
    out_prefix: str
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
            "out_prefix": self.out_prefix,
        }


def stage_now(source: Location, file: SourceFile, staging_dir: str) -> Future[StagedInput]:
    """Stage ``file`` in this thread; the future holds the copy or the storage error."""
    staged: Future[StagedInput] = Future()
    try:
        staged.set_result(source.stage(file, staging_dir))
    except Exception as exc:  # noqa: BLE001 - reported when the file's turn comes
        staged.set_exception(exc)
    return staged


def _download(source: Location, file: SourceFile, staging_dir: str) -> StagedInput:
    staged = source.stage(file, staging_dir)
    crash_point("downloaded")
    return staged


def fetch_ahead(
    transfers: ThreadPoolExecutor,
    source: Location,
    files: Iterable[SourceFile],
    staging_dir: str,
    out_prefix: Callable[[int], str],
    depth: int,
) -> Iterator[FetchedFile]:
    """Yield each of ``files`` with a future of its local copy, keeping ``depth`` downloads ahead."""
    return fetch_numbered(transfers, source, enumerate(files), staging_dir, out_prefix, depth)


def fetch_numbered(
    transfers: ThreadPoolExecutor,
    source: Location,
    files: Iterable[tuple[int, SourceFile]],
    staging_dir: str,
    out_prefix: Callable[[int], str],
    depth: int,
) -> Iterator[FetchedFile]:
    """
    :func:`fetch_ahead` of files numbered by the caller: several children of one run take
    their files from one shared sequence, each file keeping its place in the run.
    """
    window: deque[FetchedFile] = deque()
    for seq, file in files:
        if source.is_local:  # nothing to download: the child reads the file in place
            yield FetchedFile(seq, file, out_prefix(seq), stage_now(source, file, staging_dir))
            continue
        staged = transfers.submit(_download, source, file, staging_dir)
        window.append(FetchedFile(seq, file, out_prefix(seq), staged))
        if len(window) > depth:
            yield window.popleft()
    while window:
        yield window.popleft()
