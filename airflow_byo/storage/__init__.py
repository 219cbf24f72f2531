"""
Sources and destinations over fsspec: :class:`Location` (listing, staging inputs, atomic
writes), :class:`FileFilter` (which files a flow takes) and the run's
:class:`~airflow_byo.storage.publisher.Publisher` (outputs, quarantine, final URLs).
"""

from __future__ import annotations

from airflow_byo.scratch import TEMP_MARKER
from airflow_byo.storage.location import Location, SourceFile, StagedInput
from airflow_byo.storage.selection import FileFilter, parse_datetime

__all__ = ["TEMP_MARKER", "FileFilter", "Location", "SourceFile", "StagedInput", "parse_datetime"]
