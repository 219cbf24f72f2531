"""
The factory's marker: ``<spec folder>/.byo-factory.json`` says which DAG files read that folder.

:func:`airflow_byo.specs.factory.build_dags` records its DAG file there at each parse inside
Airflow's DAG parsing (:func:`record`). The flow editor reads it
(:func:`airflow_byo.dag_parsing.factory_dag_files`) to know that a folder is a spec folder at all,
and which DAG file to have the dag-processor parse again right after a save. The marker is a
hidden file, so it is never taken for a spec (``find_specs`` skips hidden names)::

    {
      "dag_file": "/opt/airflow/dags/byo_flows.py",
      "factories": [
        {"dag_file": "/opt/airflow/dags/byo_flows.py", "folder": "/opt/airflow/dags/flows"}
      ],
      "folder": "/opt/airflow/dags/flows"
    }

``factories`` has one entry per DAG file that reads the folder (several may), sorted by
``dag_file``; the top-level ``dag_file`` is the first of them, for readers that want one. Paths are
absolute, as the dag-processor sees them. An entry whose DAG file is gone is dropped at the next
write; the file is rewritten only when its content changes, atomically (a temporary in the folder,
then ``rename``), and a folder the dag-processor cannot write keeps no marker: the parse goes on.
Two factories parsing at the same moment may each drop the other's entry; every parse records its
own again, so the marker converges within one parse interval.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

__all__ = ["MARKER", "read", "record"]

log = logging.getLogger(__name__)

MARKER = ".byo-factory.json"
#: Bytes read at most: a few paths in JSON (a bigger file is not a marker of ours).
_MAX_BYTES = 64 * 1024


def _raw(folder: Path) -> bytes | None:
    """The marker's bytes (a regular file, never through a link), or None."""
    try:
        fd = os.open(folder / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        raw = handle.read(_MAX_BYTES + 1)
    return raw if len(raw) <= _MAX_BYTES else None


def _entries(document: Any) -> list[dict[str, str]]:
    """The well-formed factory entries of a parsed marker (absolute paths only)."""
    if not isinstance(document, dict):
        return []
    listed = document.get("factories")
    if not isinstance(listed, list):  # a marker with only the top-level keys
        listed = [document]
    entries = []
    for entry in listed:
        if not isinstance(entry, dict):
            continue
        dag_file, folder = entry.get("dag_file"), entry.get("folder", document.get("folder", ""))
        if isinstance(dag_file, str) and os.path.isabs(dag_file) and isinstance(folder, str):
            entries.append({"dag_file": dag_file, "folder": folder})
    return entries


def read(folder: str | Path) -> list[dict[str, str]]:
    """Every factory the marker of ``folder`` names (``dag_file``, ``folder``); [] if none or broken."""
    raw = _raw(Path(folder))
    if raw is None:
        return []
    try:
        return _entries(json.loads(raw))
    except ValueError:
        return []


def _text(folder: Path, entries: list[dict[str, str]]) -> str:
    document = {"dag_file": entries[0]["dag_file"], "factories": entries, "folder": os.path.realpath(folder)}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def record(folder: str | Path, dag_file: str | Path) -> None:
    """Have the marker of ``folder`` name ``dag_file`` (best effort: never raises)."""
    folder, dag_file = Path(folder).absolute(), Path(dag_file).absolute()
    mine = {"dag_file": str(dag_file), "folder": str(folder)}
    # other factories' entries stay while their DAG file exists (as the dag-processor sees it)
    kept = {e["dag_file"]: e for e in read(folder) if os.path.isfile(e["dag_file"])}
    kept[mine["dag_file"]] = mine
    text = _text(folder, [kept[key] for key in sorted(kept)])
    if _raw(folder) == text.encode():
        return
    partial = folder / f"{MARKER}.{os.getpid()}.tmp"  # hidden, and not a spec suffix either
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, folder / MARKER)
    except OSError as exc:
        log.info(
            "cannot write the flows factory's marker %s (%s): the flow editor cannot save flows here",
            folder / MARKER,
            exc.strerror or exc,
        )
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
