"""
Have the dag-processor parse a flows factory's DAG file now, not at its next interval.

The flow editor saves a spec into a spec folder, then asks Airflow to parse the DAG file that reads
that folder (issue 23: "seconds, not minutes"):

- :func:`factory_dag_files` -- which DAG files read a spec folder, from the marker the factory
  leaves there at each parse (:mod:`airflow_byo.specs.factory_marker`);
- :func:`retire_dag` -- a deleted spec's DAG marked stale at once, as the dag-processor would mark it
  a minute or two later;
- :func:`request_reparse` -- a ``dag_priority_parsing_request`` row for one of them: exactly what
  Airflow's own ``PUT /api/v2/parseDagFile/{file_token}`` inserts
  (``airflow/api_fastapi/core_api/routes/public/dag_parsing.py``). The dag-processor claims such
  rows at every loop (about once a second), parses the file first, and refreshes its bundle
  (``DagFileProcessorManager._queue_requested_files_for_parsing``), so a new spec's DAG is listed
  within seconds and its own new per-spec DAG file is found at once, whatever
  ``[dag_processor] min_file_process_interval`` and ``refresh_interval`` say.

The row names the DAG bundle and the file's path relative to the bundle's root. Both come from the
DAG rows the dag-processor stored for that file (``dag.bundle_name``, ``dag.relative_fileloc``:
what it computed itself), and for a factory file without DAGs yet from the configured bundles
(``[dag_processor] dag_bundle_config_list``, :class:`DagBundlesManager`): the deepest bundle whose
path holds the file. Runs in the api-server, with its database session; the caller commits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_byo.exceptions import ByoConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["bundle_location", "factory_dag_files", "request_reparse", "retire_dag"]


def factory_dag_files(folder: str | Path) -> list[Path]:
    """The DAG files whose ``build_dags(...)`` reads ``folder``, as its marker says ([] if none)."""
    from airflow_byo.specs import factory_marker

    return sorted({Path(entry["dag_file"]) for entry in factory_marker.read(folder)})


def _from_dag_rows(session: Session, dag_file: Path) -> tuple[str, str] | None:
    """``(bundle_name, relative_fileloc)`` the dag-processor stored for ``dag_file``'s DAGs."""
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    query = (
        select(DagModel.bundle_name, DagModel.relative_fileloc)
        .where(DagModel.fileloc == str(dag_file), DagModel.relative_fileloc.is_not(None))
        .order_by(DagModel.is_stale, DagModel.last_parsed_time.desc())
        .limit(1)
    )
    row = session.execute(query).first()
    return (str(row[0]), str(row[1])) if row else None


def _from_bundles(dag_file: Path) -> tuple[str, str] | None:
    """``(bundle_name, relative path)`` in the deepest configured bundle whose path holds ``dag_file``."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    paths = {}
    for bundle in DagBundlesManager().get_all_dag_bundles():
        try:
            paths[bundle.name] = Path(bundle.path)
        except Exception:  # noqa: BLE001 - a bundle without a local path cannot hold the file
            continue
    for name, root in sorted(paths.items(), key=lambda item: len(str(item[1])), reverse=True):
        if dag_file.is_relative_to(root):  # plain, like Airflow's own BaseDagImporter.get_relative_path
            return name, str(dag_file.relative_to(root))
    return None


def bundle_location(session: Session, dag_file: str | Path) -> tuple[str, str]:
    """
    The DAG bundle holding ``dag_file`` and the file's path relative to the bundle's root.

    :raises ByoConfigError: no DAG of that file is known and no configured bundle holds it.
    """
    dag_file = Path(os.path.abspath(dag_file))
    found = _from_dag_rows(session, dag_file) or _from_bundles(dag_file)
    if found is None:
        raise ByoConfigError(
            f"the flows factory's DAG file {dag_file} is in no DAG bundle: no DAG of it is known and no "
            "bundle of [dag_processor] dag_bundle_config_list has a path that holds it. Fix: keep the DAG "
            "file that calls build_dags(...) in a DAG bundle's folder (by default [core] dags_folder)"
        )
    return found


def request_reparse(session: Session, dag_file: Path) -> None:
    """
    Ask the dag-processor to parse ``dag_file`` first thing (a ``DagPriorityParsingRequest``, as
    ``PUT /api/v2/parseDagFile/{file_token}`` makes). A request for that file still waiting is
    enough: no second row. Added to ``session``; the caller commits.

    :raises ByoConfigError: the file is in no DAG bundle (see :func:`bundle_location`).
    """
    from airflow.models.dagbag import DagPriorityParsingRequest
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    bundle_name, relative_fileloc = bundle_location(session, dag_file)
    pending = select(DagPriorityParsingRequest.id).where(
        DagPriorityParsingRequest.bundle_name == bundle_name,
        DagPriorityParsingRequest.relative_fileloc == relative_fileloc,
    )
    if session.execute(pending).first() is not None:
        return
    try:
        with session.begin_nested():  # a concurrent save's request (same primary key) is as good
            session.add(DagPriorityParsingRequest(bundle_name=bundle_name, relative_fileloc=relative_fileloc))
    except IntegrityError:
        pass


def retire_dag(session: Session, dag_id: str, dag_files: list[Path]) -> bool:
    """
    Mark ``dag_id`` stale now if one of ``dag_files`` (a factory's DAG files) declares it: its spec
    was deleted. Whether a row changed. Added to ``session``; the caller commits.

    The dag-processor finds a DAG that vanished from a file it still parses only by time
    (``DagFileProcessorManager.deactivate_stale_dags``: the DAG's ``last_parsed_time`` more than
    ``[dag_processor] stale_dag_threshold`` (50 s) older than the file's latest parse, checked every
    ``[scheduler] parsing_cleanup_interval`` (60 s)), so a deleted flow stayed listed for up to two
    minutes and its name could not be used again meanwhile. This sets exactly that state, and keeps
    the DAG's runs as Airflow does. If a file still declares the DAG (another spec of that name), the
    parse requested right after clears ``is_stale`` again, as every parse of a declared DAG does.
    """
    from airflow.models.dag import DagModel
    from sqlalchemy import update

    files = [str(Path(os.path.abspath(dag_file))) for dag_file in dag_files]
    if not files:
        return False
    retired = session.execute(
        update(DagModel)
        .where(DagModel.dag_id == dag_id, DagModel.fileloc.in_(files), ~DagModel.is_stale)
        .values(is_stale=True)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(retired, "rowcount", 0))
