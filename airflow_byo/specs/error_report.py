"""
What the generated error DAG files of invalid flow specs run (:mod:`airflow_byo.specs.error_files`).

Each such file calls :func:`report` when the dag-processor parses it, which re-checks its spec with
the factory's own code (:func:`airflow_byo.specs.factory.problem_of`) and

- raises the spec's problems (``<file>:<line>: <field>: <problem>. Fix: ...``): the import error of
  that file in the UI, ``airflow dags list-import-errors`` and ``GET /api/v2/importErrors``;
- or, when the spec was fixed or deleted, deletes the file and defines nothing: the parse reports
  no error, so Airflow clears the file's import error at once.

It lives apart from the writer: this module imports the factory, which imports the writer.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from airflow_byo.exceptions import ByoFlowSpecError
from airflow_byo.specs.factory import problem_of

__all__ = ["report"]

log = logging.getLogger(__name__)


def report(error_file: Path, *, spec: str, folder: str) -> None:
    """Raise the spec's problems, or delete ``error_file`` when there are none (any more)."""
    spec_file = Path(os.path.normpath(error_file.parent / spec))
    problem = (
        problem_of(spec_file, Path(os.path.normpath(error_file.parent / folder)))
        if spec_file.is_file()
        else None
    )
    if problem is None:
        try:
            error_file.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete %s: %s", error_file, exc.strerror)
        return
    raise ByoFlowSpecError(problem)
