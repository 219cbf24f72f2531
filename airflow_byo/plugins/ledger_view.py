"""
The page's view of a flow's ledger: counts, failed and quarantined files, new files, Replay.

Every access goes through :func:`flow_ledger`, the ledger the flow's runs use: its ``flow_id``
and ``ledger_conn_id`` as serialized (issue 22: the page once read ``<dag_id>.<task_id>`` in
the default ledger for every flow, and reported 0 for flows with their own). A flow whose
``flow_id`` or ``ledger_conn_id`` is a template is not resolved here: the page says so instead
of reading another ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_byo.ledger.state import Ledger
    from airflow_byo.plugins.flows import Flow

__all__ = ["flow_ledger", "ledger_status", "new_files_count", "replay"]

#: The most failed/quarantined files the page lists.
PROBLEMS_SHOWN = 200


def flow_ledger(flow: Flow) -> Ledger:
    """
    The ledger of ``flow``'s runs: ``Ledger.of(flow.flow_id, flow.ledger_conn_id)``.

    :raises ByoConfigError: the flow's ``flow_id`` or ``ledger_conn_id`` is templated.
    """
    from airflow_byo.ledger.state import Ledger

    if templated := flow.templated_ledger:
        fields = ", ".join(f"{name}={value!r}" for name, value in templated.items())
        raise ByoConfigError(
            f"the page cannot tell which ledger flow {flow.dag_id}/{flow.task_id} uses: its {fields} "
            "is rendered only when the task runs; use `airflow byo ledger ... <flow_id> "
            "--ledger-conn-id <conn_id>` with the rendered values"
        )
    return Ledger.of(flow.flow_id, flow.ledger_conn_id)


def ledger_status(flow: Flow) -> dict[str, Any]:
    """Files per state (new, done, failed, quarantined, held) and the failed/quarantined ones."""
    from airflow_byo.ledger.schema import FAILED, QUARANTINED

    try:
        ledger = flow_ledger(flow)
        counts = ledger.counts()
        problems = [
            {
                "path": r["path"],
                "state": r["state"],
                "attempts": r.get("attempts"),
                "updated": r.get("updated"),
                "error": (r.get("error") or "")[:500],
            }
            for r in ledger.records([QUARANTINED, FAILED])[:PROBLEMS_SHOWN]
        ]
    except ByoConfigError as exc:
        return {"counts": {}, "problems": [], "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 -- the page still shows everything else
        return {"counts": {}, "problems": [], "error": f"ledger unavailable: {type(exc).__name__}: {exc}"}
    return {"counts": counts, "problems": problems, "error": None}


def replay(flow: Flow, paths: Sequence[str]) -> int:
    """The quarantined files at exactly ``paths`` (no glob) are processed again by the next run."""
    from airflow_byo.ledger.schema import QUARANTINED

    return flow_ledger(flow).forget(paths=paths, states=[QUARANTINED], reason="replay from the UI")


def new_files_count(flow: Flow, listing: list[dict[str, Any]]) -> int | None:
    """How many listed files the ledger has never seen (the next run's new files); None if unknown."""
    try:
        known = {r["path"] for r in flow_ledger(flow).records()}
    except Exception:  # noqa: BLE001 -- shown as unknown; ledger_status says why
        return None
    return sum(1 for f in listing if f["name"] not in known)
