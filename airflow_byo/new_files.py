"""
Which files of a source a flow still has to process: listing + file selection + the ledger.

One definition shared by the flow operator, the file sensor and its trigger, and the batch
planner. It is a plain description (strings and numbers) that :meth:`NewFiles.to_kwargs` turns
into JSON, so a trigger can carry it to the triggerer and rebuild it there. The source location
and the ledger are built once per :class:`NewFiles` (one connection lookup each).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.faults import crash_point
from airflow_byo.ledger.holders import HeldFiles, held_files
from airflow_byo.storage.location import Location
from airflow_byo.storage.selection import FileFilter

if TYPE_CHECKING:
    from airflow_byo.ledger.runs import RunIdentity
    from airflow_byo.ledger.state import Ledger
    from airflow_byo.runner.child_process import TaskLog
    from airflow_byo.runtime_config import JobConfig
    from airflow_byo.storage.location import SourceFile

__all__ = ["HeldFiles", "NewFiles"]


@dataclass(frozen=True)
class NewFiles:
    """The files of ``source`` matching ``selection`` that ``flow_id`` has not processed yet."""

    source: str
    flow_id: str
    source_conn_id: str | None = None
    selection: FileFilter = field(default_factory=FileFilter)
    track_files: bool = True
    ledger_conn_id: str | None = None
    on_change: str = "reprocess"

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> NewFiles:
        """Rebuild from :meth:`to_kwargs` (the selection's keys are flat, as users write them)."""
        own = {name: kwargs[name] for name in cls.__dataclass_fields__ if name in kwargs}
        selection = {name: kwargs[name] for name in FileFilter.__dataclass_fields__ if name in kwargs}
        return cls(**own, selection=FileFilter(**selection))

    def to_kwargs(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "flow_id": self.flow_id,
            "source_conn_id": self.source_conn_id,
            "track_files": self.track_files,
            "ledger_conn_id": self.ledger_conn_id,
            "on_change": self.on_change,
            **self.selection.to_kwargs(),
        }

    @cached_property
    def location(self) -> Location:
        return Location(
            self.source, self.source_conn_id, role="source", follow_symlinks=self.selection.follow_symlinks
        )

    @cached_property
    def ledger(self) -> Ledger | None:
        """The flow's ledger (``None`` with ``track_files=False``), connected once."""
        if not self.track_files:
            return None
        from airflow_byo.ledger.state import Ledger

        return Ledger.of(self.flow_id, self.ledger_conn_id)

    def find(self, snapshot: list[SourceFile] | None = None) -> tuple[int, list[SourceFile]]:
        """``(files listed, files still to process)``; ``snapshot`` replaces the listing."""
        listing = snapshot if snapshot is not None else self.location.list_files(self.selection)
        crash_point("listed")
        new = self.ledger.new_files(listing, on_change=self.on_change) if self.ledger else listing
        return len(listing), new

    def held_elsewhere(self, me: RunIdentity | None = None) -> HeldFiles:
        """
        The flow's files held by live claims of runs other than ``me``: call it before ``me``
        claims any. Claims of runs provably dead (seen from ``me``) are taken over at once and
        listed in :attr:`HeldFiles.taken_over`; the rest are what a run reports (instead of a
        silent "0 processed").
        """
        if self.ledger is None:
            return HeldFiles()
        return held_files(self.ledger, me)

    def held_before_claiming(self, me: RunIdentity | None, job: JobConfig, log: TaskLog) -> HeldFiles:
        """
        What :meth:`held_elsewhere` finds before ``me`` claims anything, logged; with
        ``job_config.on_held: wait``, after waiting for those files to be released (at most until
        the last claim seen expires). Every takeover on the way is kept.
        """
        held = self.held_elsewhere(me)
        taken = list(held.taken_over)
        if held.count and job.on_held == "wait":
            deadline = (held.last or 0.0) + 1.0
            log.info(
                "%s; on_held is 'wait': waiting for them until %s",
                held.what(self.flow_id),
                datetime.fromtimestamp(deadline, UTC).isoformat(timespec="seconds"),
            )
            poll = max(0.2, min(10.0, job.lease_seconds / 10))
            while held.count and (left := deadline - time.time()) > 0:
                time.sleep(min(poll, left))
                held = self.held_elsewhere(me)
                taken += held.taken_over
            if not held.count:
                log.info("The held files were released or their claims expired: processing them")
        held = HeldFiles(held.holders, tuple(taken))
        if held.taken_over:
            log.warning("%s", held.takeover_message(self.flow_id))
        if held.count:
            log.warning("%s", held.message(self.flow_id))
        return held

    def snapshot(self, new: list[SourceFile]) -> dict[str, Any]:
        """Store ``new`` in the ledger; return the XCom pointer a flow operator accepts as ``files``."""
        if self.ledger is None:
            raise ByoConfigError("sensors and batch planners need the ledger (track_files=True)")
        from airflow_byo.ledger.snapshots import save_snapshot

        return {
            "snapshot": save_snapshot(self.ledger, new),
            "count": len(new),
            "sample": [f.relative_path for f in new[:10]],
        }

    def load_snapshot(self, pointer: Any) -> list[SourceFile]:
        """The files a sensor or planner handed over (``files=``: ``{"snapshot": id, ...}``)."""
        if not isinstance(pointer, dict) or not pointer.get("snapshot"):
            raise ByoConfigError(
                f"files must be a sensor's or planner's XCom like {{'snapshot': '<id>'}}, got {pointer!r}"
            )
        if self.ledger is None:
            raise ByoConfigError("files= needs the ledger (track_files=True): snapshots are stored there")
        from airflow_byo.ledger.snapshots import load_snapshot

        return load_snapshot(
            self.ledger,
            str(pointer["snapshot"]),
            batch=int(pointer.get("batch", 0)),
            of=int(pointer.get("of", 1)),
        )
