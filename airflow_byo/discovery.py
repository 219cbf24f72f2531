"""
Which files of a source a flow still has to process: listing + filters + the ledger.

One definition shared by the flow operator, the file sensor and its trigger, and the batch
planner. It is a plain, serialisable description (strings and numbers), so a trigger can carry it
to the triggerer and rebuild it there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_byo.faults import crash_point
from airflow_byo.storage import FileFilter, Location, parse_datetime

if TYPE_CHECKING:
    from airflow_byo.ledger.store import Ledger
    from airflow_byo.storage import SourceFile

__all__ = ["NewFiles"]


@dataclass(frozen=True)
class NewFiles:
    """The files of ``source`` matching the filters that ``flow_id`` has not processed yet."""

    source: str
    flow_id: str
    source_conn_id: str | None = None
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    recursive: bool = True
    modified_after: datetime | str | None = None
    min_size: int | None = None
    max_size: int | None = None
    track_files: bool = True
    ledger_conn_id: str | None = None
    on_change: str = "reprocess"
    _filter: FileFilter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("include", "exclude"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if isinstance(self.modified_after, datetime):
            object.__setattr__(self, "modified_after", self.modified_after.isoformat())
        file_filter = FileFilter(
            include=self.include,
            exclude=self.exclude,
            recursive=self.recursive,
            modified_after=parse_datetime(self.modified_after, "modified_after"),
            min_size=self.min_size,
            max_size=self.max_size,
        )
        object.__setattr__(self, "_filter", file_filter)

    @classmethod
    def of_task(
        cls, task: Any, *, flow_id: str, on_change: str = "reprocess", track_files: bool = True
    ) -> NewFiles:
        """Build from a task's ``source``/``source_conn_id``/filter/``ledger_conn_id`` attributes."""
        return cls(
            source=task.source,
            flow_id=flow_id,
            source_conn_id=task.source_conn_id,
            include=task.include,
            exclude=task.exclude,
            recursive=task.recursive,
            modified_after=task.modified_after,
            min_size=task.min_size,
            max_size=task.max_size,
            track_files=track_files,
            ledger_conn_id=task.ledger_conn_id,
            on_change=on_change,
        )

    def location(self) -> Location:
        return Location(self.source, self.source_conn_id, role="source")

    def ledger(self) -> Ledger | None:
        if not self.track_files:
            return None
        from airflow_byo.ledger.store import Ledger, ledger_url

        return Ledger(self.flow_id, ledger_url(self.ledger_conn_id))

    def find(self, snapshot: list[SourceFile] | None = None) -> tuple[int, list[SourceFile]]:
        """``(files listed, files still to process)``; ``snapshot`` replaces the listing."""
        listing = snapshot if snapshot is not None else self.location().list_files(self._filter)
        crash_point("listed")
        ledger = self.ledger()
        new = ledger.new_files(listing, on_change=self.on_change) if ledger else listing
        return len(listing), new

    def snapshot(self, new: list[SourceFile]) -> dict[str, Any]:
        """Store ``new`` in the ledger; return the XCom pointer a flow operator accepts as ``files``."""
        ledger = self.ledger()
        if ledger is None:
            from airflow_byo.exceptions import ByoConfigError

            raise ByoConfigError("sensors and batch planners need the ledger (track_files=True)")
        return {
            "snapshot": ledger.save_snapshot(new),
            "count": len(new),
            "sample": [f.relative_path for f in new[:10]],
        }

    def to_kwargs(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_filter")
        data["include"], data["exclude"] = list(self.include), list(self.exclude)
        return data
