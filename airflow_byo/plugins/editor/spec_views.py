"""
What the Edit and History pages read: a flow's spec (its YAML, data, hash, whether the page may
edit it, its history), and one version of its history with a diff against the current file.

A spec in the spec folder is editable by users with edit access to its DAG while the folder takes
writes; a spec flow whose file lies elsewhere is shown read-only (the page offers "copy as a new
spec flow").
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException

from airflow_byo.plugins.editor.files import opened_dir, read_small
from airflow_byo.plugins.editor.history import content_hash
from airflow_byo.plugins.editor.settings import FolderState, folder_state
from airflow_byo.plugins.editor.spec_store import SpecStore
from airflow_byo.plugins.editor.validation import load_text

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["spec_view", "version_view"]


def _store(state: FolderState) -> SpecStore | None:
    from airflow_byo.specs.loader import max_spec_bytes

    if state.path is None or not os.path.isdir(state.path):
        return None
    return SpecStore(Path(state.path), max_spec_bytes())


def _may_edit(session: Session, user: Any, name: str) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.models.dag import DagModel

    details = DagDetails(id=name, team_name=DagModel.get_team_name(name, session=session))
    return bool(get_auth_manager().is_authorized_dag(method="PUT", details=details, user=user))


def _view(name: str, file: str, path: str, content: bytes) -> dict[str, Any]:
    text = content.decode("utf-8", errors="replace")
    return {
        "name": name,
        "file": file,
        "path": path,
        "spec": load_text(content),
        "yaml": text,
        "hash": content_hash(content),
    }


def _elsewhere(session: Session, name: str) -> dict[str, Any] | None:
    """The spec of spec flow ``name`` when its file lies outside the spec folder (read-only)."""
    from airflow_byo.plugins.flows import find_flows
    from airflow_byo.specs.loader import max_spec_bytes

    for flow in find_flows(session, {name}):
        if flow.spec_file and os.path.isabs(flow.spec_file):
            path = Path(flow.spec_file)
            try:
                with opened_dir(path.parent) as fd:
                    content = read_small(fd, path.name, max_spec_bytes())
            except OSError:
                continue
            return _view(name, flow.spec_file, flow.spec_file, content)
    return None


_OUTSIDE = "its spec file lies outside [byo] spec_folder: copy it as a new spec flow to edit it on the page"


def spec_view(session: Session, user: Any, name: str) -> dict[str, Any]:
    """``GET /api/specs/{name}``."""
    state = folder_state()
    store = _store(state)
    file = store.locate(name) if store else None
    history: list[dict[str, Any]] = []
    if store is None or file is None:
        view = _elsewhere(session, name)
        if view is None:
            raise HTTPException(
                404, f"no flow spec declares {name!r} (in the spec folder, or as a spec flow's file)"
            )
        reason: str | None = _OUTSIDE
    else:
        view = _view(name, file, str(store.folder / file), store.read(file).content)
        history = [v.summary() for v in store.versions(name)]
        reason = None
        if not state.ok:
            reason = state.message
        elif not _may_edit(session, user, name):
            reason = "you may read this flow, not edit it (edit access to its DAG is needed)"
    return view | {
        "editable": reason is None,
        "read_only_reason": reason,
        "history": history,
        "spec_folder": state.as_dict(),
    }


def version_view(name: str, number: int) -> dict[str, Any]:
    """``GET /api/specs/{name}/history/{version}``: the version and its diff against the current file."""
    store = _store(folder_state())
    version = store.version(name, number) if store else None
    if store is None or version is None:
        raise HTTPException(404, f"flow {name!r} has no version {number}")
    file = store.locate(name)
    stored = store.read(file) if file else None
    current = stored.content.decode("utf-8", errors="replace") if stored else ""
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        version.content.splitlines(keepends=True),
        fromfile=f"{file or version.file} (current)" if file else "(deleted)",
        tofile=f"{version.file} (version {number})",
    )
    return version.summary() | {
        "yaml": version.content,
        "diff": "".join(diff),
        "current_hash": stored.hash if stored else None,
    }
