"""
The triggers that wait, in the triggerer, for files a flow has not processed yet.

- :class:`ByoNewFilesTrigger`: the deferrable :class:`~airflow_byo.sensors.new_files.ByoNewFilesSensor`'s;
  polls until the source holds unprocessed files, then fires once with a snapshot pointer.
- :class:`ByoNewFilesEventTrigger`: an event trigger for Airflow's ``AssetWatcher``
  (:func:`airflow_byo.assets.new_files_asset`); schedules a flow's DAG whenever new files land,
  and never ends.

How Airflow 3.3 runs the event trigger (``jobs/triggerer_job_runner.py``, ``models/trigger.py``,
``dag_processing/collection.py``), and what that asks of it:

- The dag-processor creates one ``Trigger`` row per watcher of an Asset that an **unpaused** DAG is
  scheduled on, identified by ``BaseEventTrigger.hash(classpath, kwargs)``: as long as a DAG file
  gives the same kwargs, the row (and the running trigger) stays; other kwargs replace it. So the
  kwargs are plain JSON, the same at every parse (no times, no ids). Pausing the DAG removes the
  row, unpausing creates it at the next parse of the DAG file.
- The triggerer runs ``run()`` as one long-lived coroutine and turns **every** event it yields into
  an Asset event (``Trigger.submit_event`` -> ``AssetManager.register_asset_change``), which queues
  a run of each DAG scheduled on the Asset. A trigger that returns is started again from its kwargs
  at the triggerer's next loop, and so is one whose triggerer died: memory is per start only.
- So the trigger never returns, and it must not announce the same files at every poll: the files
  stay "unprocessed" in the ledger between the event and the moment the queued run claims them
  (a scheduler loop and a task start-up later), and for good when a run fails on them.

What it does: every ``poll_interval`` seconds it lists the source. Files it has not seen yet
(path and version: ETag, or size and mtime) are checked against the ledger; the unprocessed ones
are announced in one event, and every file checked is remembered, processed or not. A poll that
lists only remembered files costs one listing and no ledger query. Every ``recheck_interval``
seconds it asks the ledger about the whole listing again and announces the files still
unprocessed that it has not announced for that long: files of a run that died, failed files (one
retry per interval, not a storm), files rewound in the ledger. A new start (triggerer restart,
DAG unpaused or changed) announces what is unprocessed at once; the run it queues takes what
another run does not hold, so at worst it finds nothing and succeeds with zero files.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.new_files import NewFiles

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_byo.storage.location import SourceFile

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_RECHECK_INTERVAL",
    "ByoNewFilesEventTrigger",
    "ByoNewFilesTrigger",
    "FileMemory",
    "check_intervals",
]


# -- the deferrable sensor's trigger -------------------------------------------------------------


class ByoNewFilesTrigger(BaseTrigger):
    """
    Poll a source until it holds unprocessed files, then fire once with a snapshot pointer (for
    :class:`~airflow_byo.sensors.new_files.ByoNewFilesSensor` in deferrable mode).

    Listing and the ledger query are blocking calls: they run in a thread so the triggerer's
    event loop stays free for its other triggers.

    :param new_files: :meth:`NewFiles.to_kwargs` of the flow's source, filters and ledger.
    :param poke_interval: seconds between two checks.
    """

    def __init__(self, new_files: dict[str, Any], poke_interval: float = 60.0) -> None:
        super().__init__()
        self.new_files = new_files
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            # Stored in a deferred sensor's trigger row until it fires: a triggerer that cannot
            # import it fails the waiting task, so this classpath stays across upgrades.
            "airflow_byo.triggers.new_files.ByoNewFilesTrigger",
            {"new_files": self.new_files, "poke_interval": self.poke_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        spec = NewFiles.from_kwargs(self.new_files)
        while True:
            try:
                listed, new = await asyncio.to_thread(spec.find)
                if new:
                    pointer = await asyncio.to_thread(spec.snapshot, new)
                    yield TriggerEvent({"status": "found", "listed": listed, **pointer})
                    return
            except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with it
                yield TriggerEvent({"status": "error", "message": str(exc)})
                return
            self.log.info(
                "No new files in %s yet (%d listed); next check in %ss",
                spec.source,
                listed,
                self.poke_interval,
            )
            await asyncio.sleep(self.poke_interval)


# -- the AssetWatcher's event trigger ----------------------------------------------------------

#: Seconds between two listings of the source. 5 s keeps the wait for the next listing at 2.5 s
#: on average (the p50 target from a file's arrival to its output is 10 s) while an idle S3
#: source costs ~17,000 LIST requests a day.
DEFAULT_POLL_INTERVAL = 5.0
#: Seconds between two full ledger checks of the listing (re-announcing what is still unprocessed).
DEFAULT_RECHECK_INTERVAL = 600.0
#: Longest wait after failed polls (the wait doubles from ``poll_interval`` with each failure).
MAX_ERROR_BACKOFF = 300.0
#: Paths an event names (the count is always complete); the event lands in the Asset event's extra.
SAMPLE_SIZE = 10


def announcement(spec: NewFiles, listed: int, new: list[SourceFile], *, recheck: bool) -> TriggerEvent:
    """
    The Asset event a watcher yields for ``new`` unprocessed files (the polling watcher's and the
    S3 events watcher's: one payload shape): ``listed`` counts what the listing or messages named.
    """
    return TriggerEvent(
        {
            "flow_id": spec.flow_id,
            "source": spec.source,
            "count": len(new),
            "listed": listed,
            "sample": [f.relative_path for f in new[:SAMPLE_SIZE]],
            "recheck": recheck,
        }
    )


def check_intervals(poll_interval: Any, recheck_interval: Any) -> tuple[float, float | None]:
    """``(poll_interval, recheck_interval)`` as numbers; a clear error naming the bad one."""
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)) or poll_interval <= 0:
        raise ByoConfigError(f"poll_interval must be a number of seconds > 0, got {poll_interval!r}")
    if recheck_interval is None:
        return float(poll_interval), None
    if (
        isinstance(recheck_interval, bool)
        or not isinstance(recheck_interval, (int, float))
        or recheck_interval < poll_interval
    ):
        raise ByoConfigError(
            f"recheck_interval must be a number of seconds >= poll_interval ({poll_interval}) or "
            f"None (never recheck), got {recheck_interval!r}"
        )
    return float(poll_interval), float(recheck_interval)


def _key(file: SourceFile) -> tuple[str, str]:
    from airflow_byo.ledger.state import fingerprint

    return file.relative_path, fingerprint(file)


@dataclass
class FileMemory:
    """
    Which files of the source one trigger has checked, and when it last announced (or first saw)
    each; what to announce at the next poll. Plain and synchronous, so it is tested without a loop.
    """

    recheck_interval: float | None = DEFAULT_RECHECK_INTERVAL
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    next_recheck: float | None = None

    def poll(self, spec: NewFiles, now: float | None = None) -> tuple[int, list[SourceFile], bool]:
        """
        List the source once; ``(files listed, files to announce, whether it was a recheck)``.
        Blocking (listing, ledger): the trigger runs it in a thread.
        """
        now = time.monotonic() if now is None else now
        listing = spec.location.list_files(spec.selection)
        by_key = {_key(f): f for f in listing}
        for gone in self.seen.keys() - by_key.keys():  # deleted, or changed (a new version is new)
            del self.seen[gone]
        recheck = self.next_recheck is not None and now >= self.next_recheck
        if self.next_recheck is None or recheck:
            self.next_recheck = None if self.recheck_interval is None else now + self.recheck_interval
        if recheck and self.recheck_interval is not None:
            due = now - self.recheck_interval
            candidates = [f for key, f in by_key.items() if self.seen.get(key, due) <= due]
        else:
            candidates = [f for key, f in by_key.items() if key not in self.seen]
        if not candidates:
            return len(listing), [], recheck
        _, new = spec.find(candidates)
        for file in candidates:
            self.seen.setdefault(_key(file), now)
        for file in new:
            self.seen[_key(file)] = now
        return len(listing), new, recheck


class ByoNewFilesEventTrigger(BaseEventTrigger):
    """
    Fire an event whenever a flow's source holds unprocessed files it has not announced yet; for
    an ``AssetWatcher`` (see :func:`airflow_byo.assets.new_files_asset`), never ends.

    Listing and the ledger query are blocking calls: they run in a thread so the triggerer's event
    loop stays free for its other triggers. A failing poll (source or ledger unreachable) is logged
    and retried, waiting twice as long after each failure in a row (at most 5 minutes).

    :param new_files: :meth:`NewFiles.to_kwargs` of the flow's source, filters and ledger.
    :param poll_interval: seconds between two listings of the source.
    :param recheck_interval: seconds between two ledger checks of every listed file, which
        re-announce the files still unprocessed (``None``: only files not seen before are announced).
    """

    def __init__(
        self,
        new_files: dict[str, Any],
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        recheck_interval: float | None = DEFAULT_RECHECK_INTERVAL,
    ) -> None:
        super().__init__()
        self.new_files = new_files
        try:
            self.poll_interval, self.recheck_interval = check_intervals(poll_interval, recheck_interval)
        except ByoConfigError as exc:
            # The triggerer fails a trigger whose kwargs raise TypeError ("failed to inflate");
            # any other exception here would stop its whole trigger runner.
            raise TypeError(str(exc)) from None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            # Stored in Airflow's trigger table and hashed with the kwargs: a new classpath (this
            # class lived in airflow_byo.triggers.new_files_event before issue 22) replaces the
            # watcher's row within two parses of its DAG file (docs/event-driven.md, "Upgrading").
            "airflow_byo.triggers.new_files.ByoNewFilesEventTrigger",
            {
                "new_files": self.new_files,
                "poll_interval": self.poll_interval,
                "recheck_interval": self.recheck_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        memory = FileMemory(self.recheck_interval)
        spec: NewFiles | None = None
        failures = 0
        while True:
            wait = self.poll_interval
            try:
                if spec is None:
                    spec = NewFiles.from_kwargs(self.new_files)
                listed, new, recheck = await asyncio.to_thread(memory.poll, spec)
            except Exception as exc:  # noqa: BLE001 - a watcher keeps watching; the log says why
                failures += 1
                wait = min(self.poll_interval * 2**failures, max(self.poll_interval, MAX_ERROR_BACKOFF))
                self.log.warning(
                    "Cannot check %s for new files of flow %s (failure %d in a row, next try in %.0fs): %s",
                    self.new_files.get("source"),
                    self.new_files.get("flow_id"),
                    failures,
                    wait,
                    exc,
                )
            else:
                failures = 0
                if new:
                    self.log.info(
                        "%d new file(s) of %d in %s for flow %s%s, e.g. %s",
                        len(new),
                        listed,
                        spec.source,
                        spec.flow_id,
                        " (still unprocessed at the recheck)" if recheck else "",
                        [f.relative_path for f in new[:3]],
                    )
                    yield announcement(spec, listed, new, recheck=recheck)
                else:
                    self.log.debug("No new files in %s (%d listed)", spec.source, listed)
            await asyncio.sleep(wait)
