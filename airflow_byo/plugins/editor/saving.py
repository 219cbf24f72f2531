"""
Create, update, delete and revert a spec: checks, the write, then what follows every write --
a git commit (and push) where the folder is in git, a row in Airflow's audit log, and a priority
parsing request for the factory's DAG file so the flow is listed (or gone) within seconds.

Errors are exceptions the routes turn into answers: :class:`SpecInvalid` (422, field errors),
:class:`~airflow_byo.plugins.editor.spec_store.SpecConflict` (409, with the file's current hash),
:class:`FolderUnavailable` (409, the spec folder's state), ``HTTPException`` 404.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException

from airflow_byo.plugins.editor import spec_git
from airflow_byo.plugins.editor.audit import audit
from airflow_byo.plugins.editor.settings import FolderState, folder_state, push_conn_id
from airflow_byo.plugins.editor.spec_store import NAME, Saved, SpecConflict, SpecStore
from airflow_byo.plugins.editor.validation import FieldError, check_text, dump_spec

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "FolderUnavailable",
    "SpecInvalid",
    "checked_name",
    "create",
    "delete",
    "revert",
    "spec_of",
    "update",
    "writable_store",
]

log = logging.getLogger(__name__)
_HASH = re.compile(r"^[0-9a-f]{64}$")
_MESSAGES = {"create": "Create flow {name}", "save": "Update flow {name}", "delete": "Delete flow {name}"}


class SpecInvalid(Exception):
    """The spec breaks a check: 422 with its field errors."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class FolderUnavailable(Exception):
    """The spec folder cannot take a write (unset, no factory, read-only): 409 with its state."""

    def __init__(self, state: FolderState) -> None:
        super().__init__(state.message)
        self.state = state


def writable_store() -> tuple[SpecStore, FolderState]:
    """The spec folder's store, when the page may write there."""
    from airflow_byo.specs.loader import max_spec_bytes

    state = folder_state()
    if not state.ok or state.path is None:
        raise FolderUnavailable(state)
    return SpecStore(Path(state.path), max_spec_bytes()), state


def expected_hash(body: dict[str, Any]) -> str:
    """The ``hash`` of the content the page loaded (a SHA-256, hex)."""
    value = body.get("hash")
    if not isinstance(value, str) or not _HASH.match(value):
        raise SpecInvalid(
            [FieldError("hash", "required: the SHA-256 (hex) of the spec the page loaded; reload the flow")]
        )
    return value


def spec_of(body: dict[str, Any]) -> dict[str, Any]:
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise SpecInvalid(
            [FieldError("spec", "required: the flow spec as a JSON object (name, source, ...)")]
        )
    return spec


def checked_name(name: str) -> str:
    """A flow name from a URL, refused (422) unless a spec could have it."""
    if not NAME.match(name):
        raise SpecInvalid(
            [
                FieldError(
                    "name", f"{name[:80]!r} is not a flow name: letters, digits, '_', '-' and '.', not first"
                )
            ]
        )
    return name


def _checked(store: SpecStore, file: str, content: bytes) -> bytes:
    if errors := check_text(content, store.folder / file, max_bytes=store.max_bytes):
        raise SpecInvalid(errors)
    return content


def _located(store: SpecStore, name: str) -> str:
    file = store.locate(name)
    if file is None:
        raise HTTPException(
            404,
            f"no spec file declares flow {name!r} in the spec folder {store.folder}: a flow whose spec lies "
            "elsewhere (or a Python DAG) is read-only on the page",
        )
    return file


def create(session: Session, user: Any, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/specs``: a new spec ``<name>.yaml``, written paused."""
    from airflow_byo.plugins.editor.rights import dag_exists

    spec = spec_of(body)
    store, state = writable_store()
    content = _checked(store, f"{spec.get('name')}.yaml", dump_spec(spec))
    name = str(spec["name"])  # the checks passed: the model's name
    if dag_exists(session, name):
        raise SpecConflict(f"{name}: a DAG named {name!r} already exists: choose another name")
    saved = store.create(name, content, author=user.get_name())
    return {"name": name, "dag_id": name, **_after(session, user, state, store, "create", name, saved)}


def update(session: Session, user: Any, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """``PUT /api/specs/{name}``: the new content, if the file is still what the page loaded."""
    spec, expected = spec_of(body), expected_hash(body)
    if spec.get("name") != name:
        raise SpecInvalid(
            [
                FieldError(
                    "name",
                    f"a flow keeps its name ({name!r}): to rename it, create a new flow and delete this one",
                )
            ]
        )
    store, state = writable_store()
    file = _located(store, checked_name(name))
    content = _checked(store, file, dump_spec(spec, Path(file).suffix))
    saved = store.replace(name, file, content, expected=expected, author=user.get_name(), action="save")
    return _after(session, user, state, store, "save", name, saved)


def revert(session: Session, user: Any, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/specs/{name}/revert``: a new save whose content is version ``version``."""
    number, expected = body.get("version"), expected_hash(body)
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise SpecInvalid([FieldError("version", "required: the number of a version of the flow's history")])
    store, state = writable_store()
    file = _located(store, checked_name(name))
    version = store.version(name, number)
    if version is None:
        raise HTTPException(404, f"flow {name!r} has no version {number}")
    content = _checked(store, file, version.content.encode())
    saved = store.replace(name, file, content, expected=expected, author=user.get_name(), action="revert")
    return _after(session, user, state, store, "revert", name, saved, reverted_to=number)


def delete(session: Session, user: Any, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """``DELETE /api/specs/{name}``: the file goes, its history stays."""
    expected = expected_hash(body)
    store, state = writable_store()
    file = _located(store, checked_name(name))
    saved = store.delete(name, file, expected=expected)
    return _after(session, user, state, store, "delete", name, saved)


def _after(
    session: Session,
    user: Any,
    state: FolderState,
    store: SpecStore,
    action: str,
    name: str,
    saved: Saved,
    **extra: Any,
) -> dict[str, Any]:
    """Commit, audit, ask for a parse; the answer of the write."""
    answer: dict[str, Any] = {"file": saved.file, "hash": saved.hash, "previous_hash": saved.previous_hash}
    answer |= {"version": saved.version, "unchanged": not saved.changed, **extra}
    if not saved.changed:
        return answer | {"git": None, "reparse": None}
    message = _MESSAGES.get(action, "Revert flow {name} to version {reverted_to}").format(name=name, **extra)
    git = spec_git.commit_file(
        store.folder,
        saved.file,
        user=user.get_name(),
        message=f"{message} (BYO Flows page)",
        push_conn_id=push_conn_id(),
    )
    commit = git.commit if git else None
    audit(
        session,
        action,
        user=user,
        name=name,
        file=saved.file,
        hash=saved.hash,
        previous_hash=saved.previous_hash,
        commit=commit,
        version=saved.version,
        **extra,
    )
    retire = name if action == "delete" else None
    return answer | {"git": git.as_dict() if git else None, "reparse": _reparse(session, state, retire)}


def _reparse(session: Session, state: FolderState, retire: str | None = None) -> str:
    """
    Ask the dag-processor to parse the factory's DAG files now: ``requested``, or why not. A deleted
    flow's DAG (``retire``) is marked stale first, so it leaves the listings at once.
    """
    from airflow_byo.dag_parsing import request_reparse, retire_dag

    try:
        if retire is not None:
            retire_dag(session, retire, [Path(dag_file) for dag_file in state.dag_files])
        for dag_file in state.dag_files:
            request_reparse(session, Path(dag_file))
        session.commit()
    except Exception as exc:  # noqa: BLE001 - the file is saved; it is listed at the next regular parse
        session.rollback()
        log.warning("Could not request a parse of %s: %s", ", ".join(state.dag_files), exc)
        return f"failed ({exc}); the flow is listed at the dag-processor's next regular parse"
    return "requested"
