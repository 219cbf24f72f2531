"""ByoNewFilesSensor: wait until a flow's source holds files the flow has not processed yet."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_byo.discovery import NewFiles
from airflow_byo.exceptions import ByoStorageError
from airflow_byo.triggers.new_files import ByoNewFilesTrigger

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from airflow.sdk import Context

__all__ = ["ByoNewFilesSensor"]


class ByoNewFilesSensor(BaseSensorOperator):
    """
    Succeed when ``source`` holds at least one file matching the filters that flow ``flow_id``
    has not processed, and hand the list to the flow as a ledger snapshot (XCom:
    ``{"snapshot": id, "count": n, "sample": [...]}``; pass ``files=sensor.output`` to
    :class:`~airflow_byo.operators.byo_flow.ByoFlowOperator`).

    :param source: directory or URL to watch (templated).
    :param flow_id: the flow's name in the ledger: the same as the flow operator's (whose default
        is ``<dag_id>.<task_id>`` of the flow task).
    :param source_conn_id: connection for a remote source (templated).
    :param include: globs a file must match (templated).
    :param exclude: globs that drop a file (templated).
    :param recursive: also watch sub-directories.
    :param modified_after: only files modified after this time (templated).
    :param min_size: only files of at least this many bytes.
    :param max_size: only files of at most this many bytes.
    :param ledger_conn_id: the ledger database (as the flow operator's).
    :param on_change: ``reprocess`` or ``ignore`` changed files, as the flow's ``job_config``.
    :param deferrable: wait in the triggerer instead of a worker slot (default
        ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("source", "source_conn_id", "include", "exclude", "modified_after")

    def __init__(
        self,
        *,
        source: str,
        flow_id: str,
        source_conn_id: str | None = None,
        include: Sequence[str] | str = ("*",),
        exclude: Sequence[str] | str = (),
        recursive: bool = True,
        modified_after: datetime | str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        ledger_conn_id: str | None = None,
        on_change: str = "reprocess",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.flow_id = flow_id
        self.source_conn_id = source_conn_id
        self.include = include
        self.exclude = exclude
        self.recursive = recursive
        self.modified_after = modified_after
        self.min_size = min_size
        self.max_size = max_size
        self.ledger_conn_id = ledger_conn_id
        self.on_change = on_change
        self.deferrable = deferrable

    def _new_files(self) -> NewFiles:
        return NewFiles.of_task(self, flow_id=self.flow_id, on_change=self.on_change)

    def poke(self, context: Context) -> PokeReturnValue:
        spec = self._new_files()
        listed, new = spec.find()
        self.log.info(
            "%d file(s) in %s, %d not processed by flow %r", listed, spec.source, len(new), self.flow_id
        )
        if not new:
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=spec.snapshot(new))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        found = self.poke(context)  # no need to defer when the files are already there
        if found.is_done:
            return found.xcom_value
        self.defer(
            trigger=ByoNewFilesTrigger(self._new_files().to_kwargs(), poke_interval=self.poke_interval),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "found":
            raise ByoStorageError(f"waiting for new files in {self.source!r} failed: {event.get('message')}")
        self.log.info("%d new file(s) in %s, e.g. %s", event["count"], self.source, event["sample"][:3])
        return {key: event[key] for key in ("snapshot", "count", "sample")}
