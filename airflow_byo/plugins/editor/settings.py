"""
The flow editor's ``[byo]`` settings, and the state of its spec folder.

``spec_folder`` is the one folder the page writes specs to. The page says up front what it can do
there (:func:`folder_state`): ``unset`` (read-only page), ``no_factory`` (no DAG file reads that
folder yet: the factory leaves ``.byo-factory.json`` in it at each parse), ``read_only`` (the
api-server cannot write it: checked by a real write, so a read-only mount is seen even by root),
or ``ok``; and whether the folder lies in a git work tree (each save is then a commit).
"""

from __future__ import annotations

import errno
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.provider_config import setting
from airflow_byo.specs.factory_marker import MARKER as FACTORY_MARKER

__all__ = [
    "FACTORY_MARKER",
    "FolderState",
    "editor_local_roots",
    "flow_editors",
    "folder_state",
    "push_conn_id",
    "spec_folder",
]


def spec_folder() -> Path | None:
    """``[byo] spec_folder`` as a real path, or None when unset."""
    raw = setting("spec_folder").strip()
    if not raw:
        return None
    path = Path(os.path.expanduser(raw))
    if not path.is_absolute():
        raise ByoConfigError(
            f"[byo] spec_folder: {raw!r} is not an absolute path. Fix: set it to the absolute path of a "
            "folder a DAG file passes to build_dags(...) (AIRFLOW__BYO__SPEC_FOLDER)"
        )
    return Path(os.path.realpath(path))


def flow_editors() -> tuple[set[str], set[str]]:
    """``[byo] flow_editors``: (user names, role names); both empty when unset."""
    users: set[str] = set()
    roles: set[str] = set()
    for entry in (part.strip() for part in setting("flow_editors").split(",")):
        if entry.lower().startswith("role:"):
            if role := entry[5:].strip():
                roles.add(role.lower())
        elif entry:
            users.add(entry)
    return users, roles


def editor_local_roots() -> list[str]:
    """``[byo] editor_local_roots`` as real paths (absolute paths, commas or new lines)."""
    raw = setting("editor_local_roots")
    entries = [part.strip() for line in raw.splitlines() for part in line.split(",") if part.strip()]
    roots = []
    for entry in entries:
        path = os.path.expanduser(entry)
        if not os.path.isabs(path):
            raise ByoConfigError(
                f"[byo] editor_local_roots: {entry!r} is not an absolute path. Fix: list absolute folders "
                "separated by commas (AIRFLOW__BYO__EDITOR_LOCAL_ROOTS)"
            )
        roots.append(os.path.realpath(path))
    return roots


def push_conn_id() -> str | None:
    """``[byo] spec_git_push_conn_id``, or None."""
    return setting("spec_git_push_conn_id").strip() or None


@dataclass(frozen=True)
class FolderState:
    """What the page can do in the spec folder, and why not."""

    path: str | None
    state: str  # ok | unset | no_factory | read_only
    in_git: bool = False
    message: str = ""
    dag_files: list[str] = field(default_factory=list)  # the factory's DAG files (from its marker)

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def factory_snippet(folder: Path) -> str:
    """The one-line DAG file that makes ``folder`` a spec folder of the factory."""
    return (
        "from pathlib import Path\n\nfrom airflow_byo.specs.factory import build_dags\n\n"
        f'globals().update(build_dags(Path(__file__).parent / "{folder.name}"))\n'
    )


def _factory_dag_files(folder: Path) -> list[str]:
    """The existing DAG files the factory's marker in ``folder`` names ([] when none reads it)."""
    from airflow_byo.dag_parsing import factory_dag_files

    return [str(path) for path in factory_dag_files(folder) if path.is_file()]


def writable(folder: Path) -> str | None:
    """None when a file can be created in ``folder`` (a real attempt: root ignores modes), else why not."""
    from airflow_byo.plugins.editor.files import opened_dir

    name = f".byo-write-check-{uuid.uuid4().hex[:12]}"
    try:
        with opened_dir(folder) as fd:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd))
            os.unlink(name, dir_fd=fd)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return "it is on a read-only file system"
        return f"the api-server's user cannot write it: {exc.strerror or exc}"
    return None


def folder_state() -> FolderState:
    """The spec folder's state for the page (see the module's docs)."""
    from airflow_byo.plugins.editor import spec_git

    try:
        folder = spec_folder()
    except ByoConfigError as exc:
        return FolderState(None, "unset", message=str(exc))
    if folder is None:
        return FolderState(
            None,
            "unset",
            message="[byo] spec_folder is not set, so the page cannot save flows: copy the YAML into a "
            "folder of flow specs and commit it, or set [byo] spec_folder (AIRFLOW__BYO__SPEC_FOLDER)",
        )
    if not folder.is_dir():
        return FolderState(
            str(folder),
            "no_factory",
            message=f"[byo] spec_folder {folder} does not exist. Fix: create it, and a DAG file beside it:\n"
            + factory_snippet(folder),
        )
    in_git = spec_git.work_tree(folder) is not None
    dag_files = _factory_dag_files(folder)
    if why := writable(folder):
        return FolderState(
            str(folder),
            "read_only",
            in_git,
            f"the spec folder {folder} is read-only ({why}): copy the YAML into {folder} of the DAGs' "
            "repository and commit it",
            dag_files,
        )
    if not dag_files:
        return FolderState(
            str(folder),
            "no_factory",
            in_git,
            f"no DAG file reads {folder} yet (the flows factory leaves {FACTORY_MARKER} there when it "
            "parses it), so a flow saved there would never appear. Fix: add a DAG file beside it, e.g. "
            f"{folder.parent}/byo_flows.py:\n" + factory_snippet(folder),
        )
    return FolderState(str(folder), "ok", in_git, "", dag_files)
