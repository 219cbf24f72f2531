"""ByoBatchPlanOperator: split a flow's new files into batches for dynamically mapped flow tasks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import conf
from airflow.sdk import BaseOperator

from airflow_byo.discovery import NewFiles

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from airflow.sdk import Context

__all__ = ["ByoBatchPlanOperator"]


class ByoBatchPlanOperator(BaseOperator):
    """
    List the source once, find the files flow ``flow_id`` has not processed, store them as a
    ledger snapshot and return one pointer per batch, for
    ``ByoFlowOperator.partial(..., flow_id=...).expand(files=plan.output)``.

    Batches hold about ``files_per_batch`` files each; their number never exceeds Airflow's
    ``[core] max_map_length``. Each mapped task still claims its files in the ledger, so batches
    can never process a file twice, even when runs overlap.

    :param source: directory or URL of the flow's source (templated).
    :param flow_id: the flow's name in the ledger; set the same ``flow_id`` on the mapped task.
    :param files_per_batch: target number of files per mapped task.
    :param source_conn_id: connection for a remote source (templated).
    :param include: globs a file must match (templated).
    :param exclude: globs that drop a file (templated).
    :param recursive: also list sub-directories.
    :param modified_after: only files modified after this time (templated).
    :param min_size: only files of at least this many bytes.
    :param max_size: only files of at most this many bytes.
    :param ledger_conn_id: the ledger database (as the flow operator's).
    :param on_change: ``reprocess`` or ``ignore`` changed files, as the flow's ``job_config``.
    """

    template_fields: Sequence[str] = ("source", "source_conn_id", "include", "exclude", "modified_after")

    def __init__(
        self,
        *,
        source: str,
        flow_id: str,
        files_per_batch: int = 1000,
        source_conn_id: str | None = None,
        include: Sequence[str] | str = ("*",),
        exclude: Sequence[str] | str = (),
        recursive: bool = True,
        modified_after: datetime | str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        ledger_conn_id: str | None = None,
        on_change: str = "reprocess",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if files_per_batch < 1:
            from airflow_byo.exceptions import ByoConfigError

            raise ByoConfigError(f"files_per_batch must be at least 1, got {files_per_batch}")
        self.source = source
        self.flow_id = flow_id
        self.files_per_batch = files_per_batch
        self.source_conn_id = source_conn_id
        self.include = include
        self.exclude = exclude
        self.recursive = recursive
        self.modified_after = modified_after
        self.min_size = min_size
        self.max_size = max_size
        self.ledger_conn_id = ledger_conn_id
        self.on_change = on_change

    def execute(self, context: Context) -> list[dict[str, Any]]:
        spec = NewFiles.of_task(self, flow_id=self.flow_id, on_change=self.on_change)
        listed, new = spec.find()
        if not new:
            self.log.info("%d file(s) listed, none new for flow %r: nothing to map", listed, self.flow_id)
            return []
        max_map_length = conf.getint("core", "max_map_length", fallback=1024)
        batches = min(math.ceil(len(new) / self.files_per_batch), max_map_length)
        pointer = spec.snapshot(new)
        self.log.info("%d new file(s) of %d listed, in %d batch(es)", len(new), listed, batches)
        return [{"snapshot": pointer["snapshot"], "batch": index, "of": batches} for index in range(batches)]
