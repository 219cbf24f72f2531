"""ByoNewFilesSensor: wait until a flow's source holds files the flow has not processed yet."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_byo.exceptions import ByoStorageError
from airflow_byo.operators.source_files import SourceFilesOperator
from airflow_byo.triggers.new_files import ByoNewFilesTrigger

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_byo.new_files import NewFiles

__all__ = ["ByoNewFilesSensor"]


class ByoNewFilesSensor(SourceFilesOperator, BaseSensorOperator):
    """
    Succeed when ``source`` holds at least one file matching the filters that flow ``flow_id``
    has not processed, and hand the list to the flow as a ledger snapshot (XCom:
    ``{"snapshot": id, "count": n, "sample": [...]}``; pass ``files=sensor.output`` to
    :class:`~airflow_byo.operators.byo_flow.ByoFlowOperator`).

    The source and file-selection arguments (``source``, ``source_conn_id``, ``include``,
    ``exclude``, ``recursive``, ``modified_after``, ``min_size``, ``max_size``,
    ``ledger_conn_id``) are :class:`~airflow_byo.operators.source_files.SourceFilesOperator`'s,
    the same as the flow operator's.

    :param flow_id: the flow's name in the ledger: the same as the flow operator's (whose default
        is ``<dag_id>.<task_id>`` of the flow task).
    :param on_change: ``reprocess`` or ``ignore`` changed files, as the flow's ``job_config``.
    :param deferrable: wait in the triggerer instead of a worker slot (default
        ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = SourceFilesOperator.template_fields

    def __init__(
        self,
        *,
        flow_id: str,
        on_change: str = "reprocess",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.flow_id = flow_id
        self.on_change = on_change
        self.deferrable = deferrable

    def _new_files(self) -> NewFiles:
        return self.new_files(self.flow_id, on_change=self.on_change)

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
