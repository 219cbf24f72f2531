"""
The processed-file ledger: which file identities a flow has claimed, done, failed or quarantined.

Why a SQL table (reached through an Airflow connection) rather than Airflow's asset state store
or a manifest beside the data: claims must be atomic across workers on different machines
(CeleryExecutor), and finding the new files among millions of recorded ones must not cost a
request per recorded file. A primary key on (flow, path, fingerprint) makes a claim one
``INSERT ... ON CONFLICT DO NOTHING``; a join of the listing against the table finds new files in
one query. The asset state store has no compare-and-set and no listing; a manifest on S3/SFTP
would need conditional writes that SFTP lacks. SQLite (a file under ``$AIRFLOW_HOME``) is the
embedded default for one machine; PostgreSQL is the shared production backend.
"""

from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from airflow_byo.ledger.database import chunks, engine, insert_ignore, ledger_url
from airflow_byo.ledger.listing import new_files as listing_new_files
from airflow_byo.ledger.schema import CLAIMED, DONE, FAILED, QUARANTINED, events, files

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sqlalchemy import ColumnElement
    from sqlalchemy.engine import Connection

    from airflow_byo.storage.location import SourceFile

__all__ = ["Ledger", "Outcome", "fingerprint", "ledger_url"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One file's outcome for :meth:`Ledger.settle_many` (built by ``done_outcome``/``failed_outcome``)."""

    file: SourceFile
    #: the file's new state (done, failed or quarantined)
    state: str
    #: the details of the file's event in its history
    details: dict[str, Any]
    #: the columns of the file's row to set (outputs, error)
    columns: dict[str, Any]


def fingerprint(file: SourceFile) -> str:
    """A file's version: its ETag when the store has one, else size and modification time."""
    if file.etag:
        return f"etag:{file.etag}"
    mtime = "" if file.mtime is None else f"{file.mtime:.6f}"
    return f"size:{file.size}:mtime:{mtime}"


class Ledger:
    """
    One flow's view of the ledger.

    :param flow_id: the flow's identity (by default ``<dag_id>.<task_id>``).
    :param url: SQLAlchemy URL (see :func:`ledger_url`).
    """

    def __init__(self, flow_id: str, url: str) -> None:
        self.flow_id = flow_id
        self.url = url
        self.engine = engine(url)

    @classmethod
    def of(cls, flow_id: str, conn_id: str | None = None) -> Ledger:
        """The ledger of ``flow_id`` in the database of connection ``conn_id`` (see :func:`ledger_url`)."""
        return cls(flow_id, ledger_url(conn_id))

    # -- finding and claiming ------------------------------------------------------------------
    def new_files(self, listing: Sequence[SourceFile], *, on_change: str = "reprocess") -> list[SourceFile]:
        """
        The files of ``listing`` this flow still has to process, in listing order: never seen,
        failed earlier, or claimed by a worker whose lease expired. One query, whatever the number
        of recorded files (:mod:`airflow_byo.ledger.listing`). ``on_change="ignore"`` also skips
        a path done under another fingerprint.
        """
        return listing_new_files(self.engine, self.flow_id, listing, on_change=on_change)

    def claim(self, candidates: Sequence[SourceFile], token: str, lease_seconds: float) -> list[SourceFile]:
        """Atomically claim what nobody else holds among ``candidates``; return the files won."""
        if not candidates:
            return []
        now = time.time()
        keyed = {(f.relative_path, fingerprint(f)): f for f in candidates}
        fresh = [
            {
                "flow_id": self.flow_id,
                "path": path,
                "fingerprint": fp,
                "state": CLAIMED,
                "attempts": 1,
                "claimed_by": token,
                "lease_until": now + lease_seconds,
                "size": f.size,
                "mtime": f.mtime,
                "first_seen": now,
                "updated": now,
            }
            for (path, fp), f in keyed.items()
        ]
        reclaim = (
            update(files)
            .where(
                *self._row_identity(),
                or_(files.c.state == FAILED, and_(files.c.state == CLAIMED, files.c.lease_until < now)),
            )
            .values(
                state=CLAIMED,
                claimed_by=token,
                lease_until=now + lease_seconds,
                attempts=files.c.attempts + 1,
                updated=now,
            )
        )
        with self.engine.begin() as connection:
            connection.execute(insert_ignore(self.engine, files), fresh)
            won = self._claimed_by(connection, token, list(keyed))
            # Taking back failed files and expired claims is an UPDATE per file (~60 us of
            # SQLAlchemy each): only for the files the insert did not win, usually none.
            rest = [key for key in keyed if key not in won]
            if rest:
                connection.execute(reclaim, [{"p": p, "fp": fp} for p, fp in rest])
                won |= self._claimed_by(connection, token, rest)
            mine = [file for key, file in keyed.items() if key in won]
            self.log_events(
                connection, ((f.relative_path, fingerprint(f), "claimed", {"by": token}) for f in mine)
            )
        return mine

    def _row_identity(self) -> tuple[ColumnElement[bool], ...]:
        """The WHERE clauses of one of this flow's identities, bound per row as ``p`` and ``fp``."""
        return (
            files.c.flow_id == self.flow_id,
            files.c.path == bindparam("p"),
            files.c.fingerprint == bindparam("fp"),
        )

    def _claimed_by(
        self, connection: Connection, token: str, keys: list[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """Which of ``keys`` (path, fingerprint) ``token`` holds now."""
        rows = connection.execute(
            select(files.c.path, files.c.fingerprint).where(
                files.c.flow_id == self.flow_id,
                files.c.claimed_by == token,
                files.c.state == CLAIMED,
                files.c.path.in_([path for path, _ in keys]),
            )
        )
        wanted = set(keys)
        return {(row.path, row.fingerprint) for row in rows} & wanted

    def renew(self, token: str, lease_seconds: float) -> int:
        """Extend the lease of every file ``token`` still holds (called by :class:`LeaseKeeper`)."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(files)
                .where(files.c.flow_id == self.flow_id, files.c.claimed_by == token, files.c.state == CLAIMED)
                .values(lease_until=time.time() + lease_seconds)
            )
        return int(result.rowcount or 0)

    # -- outcomes ------------------------------------------------------------------------------
    @staticmethod
    def done_outcome(file: SourceFile, outputs: list[str]) -> Outcome:
        """The outcome of a processed file, for :meth:`settle_many`."""
        return Outcome(file, DONE, {"outputs": outputs}, {"outputs": json.dumps(outputs), "error": None})

    @staticmethod
    def failed_outcome(file: SourceFile, error: str, *, quarantined: bool = False) -> Outcome:
        """The outcome of a failed file (retried by the next run, unless quarantined)."""
        state = QUARANTINED if quarantined else FAILED
        return Outcome(file, state, {"error": error[:2000]}, {"error": error[:8000]})

    def settle_many(self, outcomes: Sequence[Outcome], token: str) -> None:
        """
        Record outcomes of files claimed by ``token`` in one transaction (one statement per
        kind of outcome, however many files): a run settles its files in small batches.
        """
        if not outcomes:
            return
        now = time.time()
        kinds: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for outcome in outcomes:
            row = {"p": outcome.file.relative_path, "fp": fingerprint(outcome.file), "st": outcome.state}
            row.update({f"v_{column}": value for column, value in outcome.columns.items()})
            kinds.setdefault(tuple(sorted(outcome.columns)), []).append(row)
        with self.engine.begin() as connection:
            for columns, rows in kinds.items():
                connection.execute(
                    update(files)
                    .where(*self._row_identity(), files.c.claimed_by == token)
                    .values(
                        state=bindparam("st"),
                        lease_until=None,
                        updated=now,
                        **{column: bindparam(f"v_{column}") for column in columns},
                    ),
                    rows,
                )
            self.log_events(
                connection,
                ((o.file.relative_path, fingerprint(o.file), o.state, o.details) for o in outcomes),
            )

    def done(self, file: SourceFile, token: str, outputs: list[str]) -> None:
        """Record ``file`` as processed, after its outputs were published."""
        self.settle_many([self.done_outcome(file, outputs)], token)

    def failed(self, file: SourceFile, token: str, error: str, *, quarantined: bool = False) -> None:
        """Record a failure: retried by the next run, unless the file was quarantined."""
        self.settle_many([self.failed_outcome(file, error, quarantined=quarantined)], token)

    def release(self, pending: Iterable[SourceFile], token: str) -> None:
        """Give back files claimed but not processed (fail_fast): the next run takes them."""
        keys = [{"p": f.relative_path, "fp": fingerprint(f)} for f in pending]
        if not keys:
            return
        with self.engine.begin() as connection:
            connection.execute(
                update(files)
                .where(*self._row_identity(), files.c.claimed_by == token, files.c.state == CLAIMED)
                .values(
                    state=FAILED,
                    attempts=files.c.attempts - 1,
                    lease_until=None,
                    error="released unprocessed (fail_fast)",
                    updated=time.time(),
                ),
                keys,
            )

    def log_events(self, connection: Connection, entries: Iterable[tuple[str, str, str, Any]]) -> None:
        """Add ``(path, fingerprint, event, details)`` entries to the files' histories, in ``connection``."""
        now = time.time()
        rows = [
            {
                "flow_id": self.flow_id,
                "path": path,
                "fingerprint": fp,
                "event": name,
                "at": now,
                "details": json.dumps(details, default=str),
            }
            for path, fp, name, details in entries
        ]
        if rows:
            connection.execute(insert(events), rows)

    # -- operations ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Number of file identities per state."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(files.c.state, func.count())
                .where(files.c.flow_id == self.flow_id)
                .group_by(files.c.state)
            ).all()
        return {str(row[0]): int(row[1]) for row in rows}

    def last_seen(self) -> float | None:
        """When the flow last saw a new file (UNIX time), or None."""
        with self.engine.connect() as connection:
            value = connection.execute(
                select(func.max(files.c.first_seen)).where(files.c.flow_id == self.flow_id)
            ).scalar()
        return None if value is None else float(value)

    def history(self, path: str) -> list[dict[str, Any]]:
        """Every event of one file (all fingerprints), oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(events.c.fingerprint, events.c.event, events.c.at, events.c.details)
                .where(events.c.flow_id == self.flow_id, events.c.path == path)
                .order_by(events.c.id)
            ).all()
        return [
            {
                "fingerprint": r.fingerprint,
                "event": r.event,
                "at": r.at,
                "details": json.loads(r.details or "{}"),
            }
            for r in rows
        ]

    def records(self, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        query = select(files).where(files.c.flow_id == self.flow_id)
        if states:
            query = query.where(files.c.state.in_(states))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query.order_by(files.c.path))]

    def forget(
        self,
        *,
        pattern: str | None = None,
        paths: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        since: float | None = None,
        reason: str,
    ) -> int:
        """
        Forget file identities so the next run processes them again; return how many.

        :param pattern: glob on the relative path (all files when neither it nor ``paths`` is given).
        :param paths: exact relative paths, matched literally (``x[1].csv`` is that file, ``a*.csv``
            no other): what the BYO Flows page's Replay sends.
        :param states: only these states (e.g. ``["quarantined"]`` to replay quarantined files).
        :param since: only identities settled at or after this UNIX time (rewind).
        """
        if pattern is not None and paths is not None:
            raise ValueError("forget: give a glob pattern or exact paths, not both")
        query = select(files.c.path, files.c.fingerprint).where(files.c.flow_id == self.flow_id)
        if states:
            query = query.where(files.c.state.in_(states))
        if since is not None:
            query = query.where(files.c.updated >= since)
        with self.engine.begin() as connection:
            if paths is not None:  # one indexed lookup per chunk of paths, never a scan
                rows = [
                    r
                    for chunk in chunks(sorted(set(paths)))
                    for r in connection.execute(query.where(files.c.path.in_(chunk)))
                ]
            else:
                rows = [
                    r
                    for r in connection.execute(query)
                    if pattern is None or fnmatch.fnmatchcase(r.path, pattern)
                ]
            keys = [(r.path, r.fingerprint) for r in rows]
            self._delete(connection, keys, reason)
        return len(keys)

    def _delete(self, connection: Connection, keys: list[tuple[str, str]], reason: str) -> None:
        """Delete the identities ``keys`` (path, fingerprint), each with a ``forgotten`` event."""
        for chunk in chunks(keys):
            connection.execute(
                delete(files).where(
                    *self._row_identity(),
                ),
                [{"p": p, "fp": fp} for p, fp in chunk],
            )
            self.log_events(connection, ((p, fp, "forgotten", {"reason": reason}) for p, fp in chunk))
