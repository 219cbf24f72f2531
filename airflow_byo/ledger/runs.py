"""
Who holds a claim: each run that claims files records itself in ``byo_runs`` under its claim
token (host, process, Airflow task instance), so another run that finds files claimed by it can
tell whether it is still alive.

A holder is *provably dead* when

- it ran on this machine, in this PID namespace, and its process is gone (a PID reused by
  another process is told apart by the process's start time), or
- it ran in this very process and its run has ended, or
- it was an earlier try of the task instance this run is, or
- the Task SDK (through the supervisor, never a metadata DB session) reports that its task
  instance is no longer running.

Anything else (another machine, no task instance, the API unreachable) counts as alive: its
claims are reported and left to expire.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select

from airflow_byo.ledger.schema import CLAIMED, files, runs

if TYPE_CHECKING:
    from airflow_byo.ledger.state import Ledger

__all__ = ["RunIdentity", "dead_because", "load_runs", "register_run"]

log = logging.getLogger(__name__)

#: Task instance states in which the try that claimed may still be working.
_ALIVE_STATES = frozenset({"running", "restarting"})
#: Rows of runs that hold nothing are kept this long (for the history), then pruned.
_KEEP_SECONDS = 7 * 24 * 3600
#: Tokens of the runs open in this process (their LedgerTracker has not exited).
_OPEN_HERE: set[str] = set()


@cache
def process_scope() -> str:
    """Where a PID means one process: this host, this boot, this PID namespace."""
    scope = socket.gethostname()
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            scope += "/" + handle.read().strip()
        scope += f"/pidns:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # not Linux: the hostname is the best we know
        pass
    return scope[:200]


def _started(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


@dataclass(frozen=True)
class RunIdentity:
    """One run of a flow as the ledger knows it (a row of ``byo_runs``)."""

    token: str
    flow_id: str
    host: str
    process_scope: str
    pid: int
    process_started: float | None = None
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    started: float = 0.0

    @classmethod
    def current(cls, flow_id: str, task_instance: Any = None) -> RunIdentity:
        """This process, with a fresh token; the task instance's key when it runs in one."""
        pid = os.getpid()

        def attribute(name: str, kind: type) -> Any:
            value = getattr(task_instance, name, None)
            return value if isinstance(value, kind) and not isinstance(value, bool) else None

        return cls(
            token=uuid.uuid4().hex,
            flow_id=flow_id,
            host=socket.gethostname()[:255],
            process_scope=process_scope(),
            pid=pid,
            process_started=_started(pid),
            dag_id=attribute("dag_id", str),
            run_id=attribute("run_id", str),
            task_id=attribute("task_id", str),
            map_index=attribute("map_index", int),
            try_number=attribute("try_number", int),
            started=time.time(),
        )

    def describe(self) -> str:
        """E.g. ``run 1a2b3c4d (host w1, pid 4242, dag etl, run manual__..., task clean, try 1)``."""
        parts = [f"host {self.host}", f"pid {self.pid}"]
        if self.dag_id:
            parts += [f"dag {self.dag_id}", f"run {self.run_id}", f"task {self.task_id}"]
            if self.map_index is not None and self.map_index >= 0:
                parts.append(f"map index {self.map_index}")
            if self.try_number is not None:
                parts.append(f"try {self.try_number}")
        else:
            parts.append("not in an Airflow task")
        started = datetime.fromtimestamp(self.started, UTC).isoformat(timespec="seconds")
        return f"run {self.token[:8]} ({', '.join(parts)}, started {started})"

    def same_task_instance(self, other: RunIdentity) -> bool:
        return self.dag_id is not None and (self.dag_id, self.run_id, self.task_id, self.map_index) == (
            other.dag_id,
            other.run_id,
            other.task_id,
            other.map_index,
        )


def unknown_holder(token: str) -> str:
    """How a claim token without a ``byo_runs`` row is shown."""
    return f"run {token[:8]} (unknown: its claim predates the ledger's record of runs)"


def register_run(ledger: Ledger, run: RunIdentity) -> None:
    """Record ``run`` (before it claims anything); prune week-old runs that hold nothing."""
    _OPEN_HERE.add(run.token)
    holding = select(files.c.claimed_by).where(files.c.state == CLAIMED, files.c.claimed_by.is_not(None))
    with ledger.engine.begin() as connection:
        connection.execute(
            delete(runs).where(runs.c.started < time.time() - _KEEP_SECONDS, runs.c.token.not_in(holding))
        )
        # A RunIdentity is a row of byo_runs, field for field.
        connection.execute(insert(runs).values(**asdict(run)))


def run_ended(token: str) -> None:
    """The run of ``token`` in this process is over (its tracker exited)."""
    _OPEN_HERE.discard(token)


def load_runs(ledger: Ledger, tokens: set[str]) -> dict[str, RunIdentity]:
    """The recorded runs among ``tokens``."""
    if not tokens:
        return {}
    with ledger.engine.connect() as connection:
        rows = connection.execute(select(runs).where(runs.c.token.in_(sorted(tokens)))).all()
    return {row.token: RunIdentity(**row._mapping) for row in rows}


def dead_because(holder: RunIdentity, me: RunIdentity) -> str | None:
    """Why ``holder`` is provably dead, seen from run ``me``; ``None`` when it may be alive."""
    if holder.process_scope == me.process_scope:
        if holder.pid == me.pid:
            if holder.token not in _OPEN_HERE:
                return f"its run in this process (pid {holder.pid}) has ended"
        elif reason := _process_gone(holder):
            return reason
    if holder.same_task_instance(me) and (holder.try_number or 0) < (me.try_number or 0):
        return f"it was try {holder.try_number} of this task instance, which now runs try {me.try_number}"
    if holder.dag_id and holder.run_id and holder.task_id:
        state = task_instance_state(holder.dag_id, holder.run_id, holder.task_id, holder.map_index)
        if state is not None and state not in _ALIVE_STATES:
            return f"its task instance is {state or 'not found'}, no longer running (Airflow task state)"
    return None


def _process_gone(holder: RunIdentity) -> str | None:
    import psutil

    where = f"on {holder.host}"
    try:
        process = psutil.Process(holder.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return f"process {holder.pid} {where} has exited"
        started = float(process.create_time())
    except psutil.NoSuchProcess:
        return f"process {holder.pid} {where} is gone"
    except (psutil.Error, OSError):
        return None  # it exists; whose it is, we may not see
    if holder.process_started is not None and abs(started - holder.process_started) > 1.0:
        return f"process {holder.pid} {where} is gone (that PID belongs to a newer process now)"
    return None


def task_instance_state(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str | None:
    """
    The state of a task instance through the Task SDK (the supervisor asks the API server):
    ``""`` when it does not exist, ``None`` when it cannot be known here (not in a task, or the
    request failed).
    """
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    index = -1 if map_index is None else map_index
    try:
        states = RuntimeTaskInstance.get_task_states(
            dag_id=dag_id, map_index=index, task_ids=[task_id], run_ids=[run_id]
        )
    except NameError:  # no supervisor: not running inside an Airflow task
        return None
    except Exception as exc:  # noqa: BLE001 -- unknown means alive: never take over on an error
        log.warning("Cannot ask Airflow for the state of %s.%s in %s: %s", dag_id, task_id, run_id, exc)
        return None
    key = task_id if index < 0 else f"{task_id}_{index}"
    state = (states.get(run_id) or {}).get(key)
    return "" if state is None else str(state)
