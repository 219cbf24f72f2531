"""
The base of every operator that takes files from a flow's source: one definition of the source
and file-selection arguments (their names, defaults, docs and template fields) shared by
:class:`~airflow_byo.operators.byo_flow.ByoFlowOperator`,
:class:`~airflow_byo.sensors.new_files.ByoNewFilesSensor` and
:class:`~airflow_byo.operators.plan_batches.ByoBatchPlanOperator`.

It is a ``BaseOperator`` subclass (not a plain mixin) so that Airflow's ``partial()``/``expand()``
argument checks, which read the signatures of ``BaseOperator`` subclasses along the MRO, accept
these arguments.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_byo.new_files import NewFiles
from airflow_byo.storage.selection import FileFilter

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

__all__ = ["SourceFilesOperator", "is_templated"]


def is_templated(value: Any) -> bool:
    """True when ``value`` still holds Jinja markup, i.e. can only be validated after rendering."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return "{{" in text or "{%" in text


class SourceFilesOperator(BaseOperator):
    """
    Source and file-selection arguments, checked at DAG-parse time unless templated.

    :param source: directory or URL to read files from (templated).
    :param source_conn_id: Airflow connection for a remote source (templated).
    :param include: globs a file must match, on its relative path or name (templated).
    :param exclude: globs that exclude a file (templated).
    :param recursive: also list files in sub-directories.
    :param modified_after: only files modified after this time (datetime or ISO string, templated).
    :param min_size: only files of at least this many bytes.
    :param max_size: only files of at most this many bytes.
    :param follow_symlinks: take symlinks whatever they point to (trusted sources only). Off by
        default: a local source lists and reads only regular files whose real path is inside the
        source, an SFTP source skips what the server reports as links; each skip is logged.
    :param ledger_conn_id: connection of the ledger database (default ``[byo] ledger_conn_id``,
        else SQLite under ``$AIRFLOW_HOME/byo``).
    """

    template_fields: Sequence[str] = (
        "source",
        "source_conn_id",
        "include",
        "exclude",
        "modified_after",
        "ledger_conn_id",
    )

    def __init__(
        self,
        *,
        source: str,
        source_conn_id: str | None = None,
        include: Sequence[str] | str = ("*",),
        exclude: Sequence[str] | str = (),
        recursive: bool = True,
        modified_after: datetime | str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        follow_symlinks: bool = False,
        ledger_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.source_conn_id = source_conn_id
        self.include = include
        self.exclude = exclude
        self.recursive = recursive
        self.modified_after = modified_after
        self.min_size = min_size
        self.max_size = max_size
        self.follow_symlinks = follow_symlinks
        self.ledger_conn_id = ledger_conn_id
        if not is_templated([include, exclude, modified_after]):
            self.file_filter()  # bad globs, sizes or dates fail the DAG file, not the run

    def file_filter(self) -> FileFilter:
        return FileFilter(
            include=self.include,  # type: ignore[arg-type]  # a str is accepted and normalised
            exclude=self.exclude,  # type: ignore[arg-type]
            recursive=self.recursive,
            modified_after=self.modified_after,  # type: ignore[arg-type]  # parsed there
            min_size=self.min_size,
            max_size=self.max_size,
            follow_symlinks=self.follow_symlinks,
        )

    def new_files(self, flow_id: str, *, on_change: str = "reprocess", track_files: bool = True) -> NewFiles:
        """The files of the source this flow has not processed yet (rendered arguments)."""
        return NewFiles(
            source=self.source,
            flow_id=flow_id,
            source_conn_id=self.source_conn_id,
            selection=self.file_filter(),
            track_files=track_files,
            ledger_conn_id=self.ledger_conn_id,
            on_change=on_change,
        )
