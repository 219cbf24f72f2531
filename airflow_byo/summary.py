"""Moved to :mod:`airflow_byo.results` (temporary re-export while modules move; removed in this change)."""

from airflow_byo.results import MAX_FILES_IN_SUMMARY, FileResult, FileStatus, RunSummary

__all__ = ["MAX_FILES_IN_SUMMARY", "FileResult", "FileStatus", "RunSummary"]
