"""ByoBatchPlanOperator: split a flow's new files into batches for dynamically mapped flow tasks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import conf

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.operators.source_files import SourceFilesOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["ByoBatchPlanOperator"]


class ByoBatchPlanOperator(SourceFilesOperator):
    """
    List the source once, find the files flow ``flow_id`` has not processed, store them as a
    ledger snapshot and return one pointer per batch, for
    ``ByoFlowOperator.partial(..., flow_id=...).expand(files=plan.output)``.

    Batches hold about ``files_per_batch`` files each; their number never exceeds Airflow's
    ``[core] max_map_length``. Each mapped task still claims its files in the ledger, so batches
    can never process a file twice, even when runs overlap.

    The source and file-selection arguments are
    :class:`~airflow_byo.operators.source_files.SourceFilesOperator`'s, the same as the flow
    operator's.

    :param flow_id: the flow's name in the ledger; set the same ``flow_id`` on the mapped task.
    :param files_per_batch: target number of files per mapped task.
    :param on_change: ``reprocess`` or ``ignore`` changed files, as the flow's ``job_config``.
    """

    def __init__(
        self, *, flow_id: str, files_per_batch: int = 1000, on_change: str = "reprocess", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if files_per_batch < 1:
            raise ByoConfigError(f"files_per_batch must be at least 1, got {files_per_batch}")
        self.flow_id = flow_id
        self.files_per_batch = files_per_batch
        self.on_change = on_change

    def execute(self, context: Context) -> list[dict[str, Any]]:
        spec = self.new_files(self.flow_id, on_change=self.on_change)
        listed, new = spec.find()
        if not new:
            self.log.info("%d file(s) listed, none new for flow %r: nothing to map", listed, self.flow_id)
            return []
        max_map_length = conf.getint("core", "max_map_length", fallback=1024)
        batches = min(math.ceil(len(new) / self.files_per_batch), max_map_length)
        pointer = spec.snapshot(new)
        self.log.info("%d new file(s) of %d listed, in %d batch(es)", len(new), listed, batches)
        return [{"snapshot": pointer["snapshot"], "batch": index, "of": batches} for index in range(batches)]
