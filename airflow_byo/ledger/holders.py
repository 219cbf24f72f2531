"""
Files of a flow held by live claims of other runs: who holds them and until when, and the
takeover of those held by runs that are provably dead (see :mod:`airflow_byo.ledger.runs`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from airflow_byo.ledger.runs import dead_because, load_runs, unknown_holder
from airflow_byo.ledger.schema import CLAIMED, FAILED, files

if TYPE_CHECKING:
    from airflow_byo.ledger.runs import RunIdentity
    from airflow_byo.ledger.state import Ledger

__all__ = ["HeldFiles", "Holder", "TakenOver", "held_files"]

_PATHS_KEPT = 20


def iso(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Holder:
    """Another run holding live claims on files of the flow."""

    token: str
    description: str  # host, pid, dag/run/task (see RunIdentity.describe)
    files: int
    until: float  # when the last of its claims expires unless it renews them
    paths: tuple[str, ...] = ()  # the first few held paths
    dead: str | None = None  # why it is provably dead, when seen without taking over

    def as_dict(self) -> dict[str, Any]:
        entry = {"run": self.token, "holder": self.description, "files": self.files, "until": iso(self.until)}
        if self.dead:
            entry["dead"] = self.dead
        return entry

    def line(self) -> str:
        return f"{self.description}: {self.files} file(s) until {iso(self.until)}"


@dataclass(frozen=True)
class TakenOver:
    """Claims of a provably dead run, released for this run to claim."""

    token: str
    description: str
    files: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.token, "holder": self.description, "files": self.files, "reason": self.reason}


@dataclass(frozen=True)
class HeldFiles:
    """The flow's files held by other runs that may be alive; and what was taken over from dead ones."""

    holders: tuple[Holder, ...] = ()
    taken_over: tuple[TakenOver, ...] = ()

    @property
    def count(self) -> int:
        return sum(h.files for h in self.holders)

    @property
    def until(self) -> float | None:
        """The earliest expiry among the holders (epoch seconds)."""
        return min((h.until for h in self.holders), default=None)

    @property
    def last(self) -> float | None:
        return max((h.until for h in self.holders), default=None)

    def _who(self) -> str:
        shown = "; ".join(h.line() for h in self.holders[:5])
        more = f"; and {len(self.holders) - 5} more run(s)" if len(self.holders) > 5 else ""
        return f"{len(self.holders)} other run(s): {shown}{more}"

    def what(self, flow_id: str) -> str:
        """How many files are held, by which runs, until when."""
        return f"{self.count} file(s) of flow {flow_id!r} are claimed by {self._who()}"

    def message(self, flow_id: str) -> str:
        """The warning a run logs: what is held, by which runs, until when, and what to do."""
        return (
            f"{self.what(flow_id)}. This run skips "
            "them: if that run is working they are processed there; if it died, a run after the claims "
            "expire takes them over (job_config.lease_seconds sets how long a claim lives; "
            "job_config.on_held: 'wait' waits for them, 'fail' fails the task). See "
            f"`airflow byo ledger status {flow_id}`"
        )

    def error(self, flow_id: str) -> str:
        """The error of ``on_held: fail``."""
        return (
            f"{self.count} file(s) of flow {flow_id!r} are held by {self._who()}; job_config.on_held is "
            f"'fail'. The last claim expires at {iso(self.last)} unless its run renews it (it is alive "
            "then, and processes them); a run after that takes them over. Set job_config.on_held to "
            f"'wait' to wait for them or 'succeed' to only report them; `airflow byo ledger status "
            f"{flow_id}` lists them"
        )

    def takeover_message(self, flow_id: str) -> str:
        lines = [f"{t.files} file(s) of {t.description}: {t.reason}" for t in self.taken_over]
        return (
            f"Took over the claims of {len(self.taken_over)} dead run(s) of flow {flow_id!r}, to process "
            f"their files now: {'; '.join(lines)}"
        )


def held_files(ledger: Ledger, me: RunIdentity | None, *, take_over: bool = True) -> HeldFiles:
    """
    Files held by live claims of runs other than ``me``: call it before ``me`` claims any. The
    claims of runs provably dead (seen from ``me``) are taken over at once: released as failed
    (their attempt counts), an event ``taken_over`` each, so this run claims them as usual.
    With ``take_over=False`` (``airflow byo ledger status``) nothing is written; the holders say
    why they are dead instead.
    """
    now = time.time()
    with ledger.engine.connect() as connection:
        rows = connection.execute(
            select(files.c.claimed_by, files.c.path, files.c.lease_until)
            .where(files.c.flow_id == ledger.flow_id, files.c.state == CLAIMED, files.c.lease_until >= now)
            .order_by(files.c.path)
        ).all()
    claims: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        claims[str(row.claimed_by or "?")].append(row)
    known = load_runs(ledger, set(claims))
    holders, taken = [], []
    for token, held in sorted(claims.items()):
        run = known.get(token)
        description = run.describe() if run else unknown_holder(token)
        dead = dead_because(run, me) if run is not None and me is not None and token != me.token else None
        if dead and take_over and me is not None:
            count = _take_over(ledger, token, description, dead, me)
            if count:
                taken.append(TakenOver(token, description, count, dead))
            continue
        holders.append(
            Holder(
                token=token,
                description=description,
                files=len(held),
                until=max(float(r.lease_until) for r in held),
                paths=tuple(r.path for r in held[:_PATHS_KEPT]),
                dead=dead,
            )
        )
    return HeldFiles(tuple(holders), tuple(taken))


def _take_over(ledger: Ledger, token: str, description: str, reason: str, me: RunIdentity) -> int:
    """Release the claims of the dead run ``token``; return how many this call released."""
    now = time.time()
    with ledger.engine.begin() as connection:
        # RETURNING: when two runs take over at once, each logs only the rows it released.
        released = connection.execute(
            update(files)
            .where(files.c.flow_id == ledger.flow_id, files.c.claimed_by == token, files.c.state == CLAIMED)
            .values(
                state=FAILED,
                lease_until=None,
                error=f"taken over from {description}: {reason}"[:8000],
                updated=now,
            )
            .returning(files.c.path, files.c.fingerprint)
        ).all()
        details = {"from": token, "holder": description, "reason": reason, "by": me.token}
        ledger.log_events(
            connection, ((row.path, row.fingerprint, "taken_over", details) for row in released)
        )
    return len(released)
