"""Moved to :mod:`airflow_byo.results` (temporary re-export while modules move; removed in this change)."""

from airflow_byo.results import FileOutcome, OutcomeStatus, StagedOutput

__all__ = ["FileOutcome", "OutcomeStatus", "StagedOutput"]
