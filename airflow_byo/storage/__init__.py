"""
Sources and destinations: :class:`Location` (listing, staging inputs, atomic writes) over one
backend per kind of storage (:mod:`airflow_byo.storage.backends`), :class:`FileFilter` (which
files a flow takes) and the run's :class:`~airflow_byo.storage.publisher.Publisher` (outputs,
quarantine, final URLs).
"""

from __future__ import annotations

from airflow_byo.scratch import TEMP_MARKER
from airflow_byo.storage.backends.base import SourceFile, StagedInput
from airflow_byo.storage.location import Location
from airflow_byo.storage.selection import FileFilter, parse_datetime

__all__ = ["TEMP_MARKER", "FileFilter", "Location", "SourceFile", "StagedInput", "parse_datetime"]
