"""
What the generated DAG files of flow specs run (:mod:`airflow_byo.specs.error_files`).

Each such file calls :func:`report` when the dag-processor parses it (every
``[dag_processor] min_file_process_interval``, and at once when the factory rewrote it):

- the spec's bytes are those the factory last found valid (their fingerprint is in the file):
  nothing to say, and nothing imported beyond this module -- 200 specs mean 200 such parses per
  interval, so this path must stay a read and a hash (bench S3);
- otherwise the spec is checked with the factory's own code
  (:func:`airflow_byo.specs.factory.problem_of`), and its problems are raised
  (``<file>:<line>: <field>: <problem>. Fix: ...``): the import error of that file in the UI,
  ``airflow dags list-import-errors`` and ``GET /api/v2/importErrors``. A spec that is fine now
  raises nothing, and Airflow clears the file's import error;
- the spec is gone: the file deletes itself (the factory's next parse would remove it anyway).

Problems that do not change the spec's bytes (another spec taking its name, a library function
removed) are the factory's to see: its next parse rewrites this file without the fingerprint, and
the dag-processor parses the changed file again within a second or two.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from airflow_byo.exceptions import ByoFlowSpecError

__all__ = ["report"]

log = logging.getLogger(__name__)


def _unchanged(spec_file: Path, valid: str) -> bool:
    """True when ``spec_file`` holds exactly the bytes of fingerprint ``valid`` (``<size>:<sha256>``)."""
    size, _, digest = valid.partition(":")
    try:
        with open(spec_file, "rb") as handle:
            if not size.isdigit() or os.fstat(handle.fileno()).st_size != int(size):
                return False
            raw = handle.read(int(size) + 1)
    except OSError:
        return False
    return len(raw) == int(size) and hashlib.sha256(raw).hexdigest() == digest


def report(error_file: Path, *, spec: str, folder: str, valid: str | None = None) -> None:
    """
    Raise the spec's problems; nothing when it is valid; delete ``error_file`` when the spec is gone.

    :param valid: the fingerprint of the spec's bytes when the factory last found them valid.
    """
    spec_file = Path(os.path.normpath(error_file.parent / spec))
    if not spec_file.is_file():
        try:
            error_file.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete %s: %s", error_file, exc.strerror)
        return
    if valid and _unchanged(spec_file, valid):
        return
    from airflow_byo.specs.factory import problem_of  # the full check: only for a changed spec

    problem = problem_of(spec_file, Path(os.path.normpath(error_file.parent / folder)))
    if problem is not None:
        raise ByoFlowSpecError(problem)
