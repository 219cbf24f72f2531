"""
The path policy: no flow reads or writes the platform's own folders.

A flow's local source, destination and quarantine folder, a test run's sample (and the folder the
sandbox sees it in) and a runtime's read-only paths are refused when they lie inside -- or contain
-- a protected folder: ``AIRFLOW_HOME``, the DAGs and plugins folders, the venv cache, the
function library, the ledger's files, the runtimes file, the system folders ``/proc``, ``/sys``,
``/dev``, ``/etc``, ``/boot``, and whatever ``[byo] protected_paths`` adds (issue 21, attack 3: a
destination in the venv cache published a ``.pth`` that another flow executed; one in the DAGs
folder planted a DAG that ran unsandboxed with the secrets; a source of ``AIRFLOW_HOME`` published
``airflow.cfg``). With ``[byo] allowed_local_roots`` set, every local path must also lie inside
one of those roots.

Paths are compared by real path (symlinks resolved; a path that does not exist yet by its nearest
existing parent) and component by component: ``/data/airflow2`` is not inside ``/data/airflow``.
Only local paths are checked (plain paths, ``file://``); ``s3://`` or ``sftp://`` URLs are another
machine's folders.

Every entry point (operator, decorator, spec, CLI, runtimes file) calls :func:`check_local_paths`
at parse time, and the operator again when its task starts (templated paths are rendered then).
Nothing here opens a database or a connection: the ledger's file is known from ``[byo]
ledger_conn_id`` and, for a SQLite connection, only from an ``AIRFLOW_CONN_<ID>`` environment
variable (a connection in the metadata DB or a secrets backend is not looked up at parse time).
The settings are read once per process and environment (see :func:`_fingerprint`), so a DAG file
of 200 flows pays for them once.
"""

from __future__ import annotations

import configparser
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from airflow_byo import provider_config
from airflow_byo.exceptions import ByoConfigError
from airflow_byo.provider_config import byo_home, setting

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "SYSTEM_FOLDERS",
    "ProtectedFolder",
    "check_local_path",
    "check_local_paths",
    "check_sample",
    "ledger_files",
    "local_path",
]

#: Host folders no flow may see: processes and kernel settings, devices, configuration, kernels.
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev", "/etc", "/boot")

_LEDGER_SUFFIXES = ("", "-wal", "-shm", "-journal")  # SQLite's database and journal files
_WHY = "a flow may not read or write the platform's own folders"


@dataclass(frozen=True)
class ProtectedFolder:
    """A folder (or file) no flow may touch: what it is, where, and the setting that says so."""

    label: str  # "the DAGs folder"
    path: str  # where it is (a real path once resolved)
    setting: str = ""  # "[core] dags_folder"

    def describe(self) -> str:
        return f"{self.label} {self.path}" + (f" ({self.setting})" if self.setting else "")


def local_path(url: str) -> str | None:
    """``url`` as an absolute local path (``~`` expanded, ``file://`` dropped), or None for a remote URL."""
    text = str(url).strip()
    for prefix in ("file://", "local://"):
        text = text.removeprefix(prefix)
    if "://" in text:
        return None
    return os.path.abspath(os.path.expanduser(text))


def _real(path: str | os.PathLike[str]) -> str:
    # Non-strict: the existing part is resolved (symlinks followed), the missing rest appended,
    # so a destination that does not exist yet is judged by its nearest existing parent.
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


# -- what is protected -----------------------------------------------------------------------------


def _core_setting(name: str) -> str:
    """``[core] <name>`` as Airflow reads it (in the ``byo`` script: environment, then ``airflow.cfg``)."""
    if not provider_config.STANDALONE:
        from airflow.providers.common.compat.sdk import conf

        return str(conf.get("core", name, fallback="") or "")
    variable = f"AIRFLOW__CORE__{name.upper()}"
    if variable in os.environ:
        return os.environ[variable]
    home = str(byo_home().parent)
    config = Path(os.environ.get("AIRFLOW_CONFIG") or Path(home) / "airflow.cfg").expanduser()
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(config, encoding="utf-8")
        value = parser.get("core", name, fallback="")
    except configparser.Error:
        value = ""
    return value.replace("{AIRFLOW_HOME}", home)


def _path_list(name: str) -> tuple[str, ...]:
    """``[byo] <name>``: absolute paths separated by commas or new lines."""
    entries = [part.strip() for line in setting(name).splitlines() for part in line.split(",")]
    paths = tuple(os.path.expanduser(entry) for entry in entries if entry)
    for entry in paths:
        if not os.path.isabs(entry):
            raise ByoConfigError(
                f"[byo] {name}: {entry!r} is not an absolute path. Fix: list absolute paths separated "
                f"by commas or new lines (AIRFLOW__BYO__{name.upper()})"
            )
    return paths


def _ledger_connection_file(conn_id: str) -> str | None:
    """The file of SQLite ledger connection ``conn_id`` when the environment defines it, else None."""
    value = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}", "").strip()
    if not value:
        return None  # in the metadata DB or a secrets backend: not looked up at parse time
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            return None  # Airflow reports the broken connection when the ledger is opened
        kind, host = str(data.get("conn_type") or ""), str(data.get("host") or "")
    else:
        parts = urlsplit(value)
        kind, host = parts.scheme, unquote(parts.netloc)
    return host if kind.lower() == "sqlite" and host else None


def ledger_files(conn_id: str | None = None) -> list[ProtectedFolder]:
    """
    The ledger's files as far as they are known without a lookup: the SQLite file (and its
    journal files) of ``conn_id`` / ``[byo] ledger_conn_id``, or the default one under AIRFLOW_HOME.
    Their paths as configured; the checks resolve them.
    """
    conn_id = conn_id or setting("ledger_conn_id") or None
    if conn_id is None:
        file, where = str(byo_home("ledger.db")), "[byo] ledger_conn_id is empty"
    else:
        found = _ledger_connection_file(conn_id)
        if found is None:
            return []
        file, where = found, f"connection {conn_id!r}"
    return [ProtectedFolder("the ledger's file", file + suffix, where) for suffix in _LEDGER_SUFFIXES]


#: The environment variables the settings above come from (Airflow's ``_CMD``/``_SECRET`` forms too).
_WATCHED = (
    "AIRFLOW_HOME",
    "AIRFLOW_CONFIG",
    "HOME",
    *(
        f"AIRFLOW__{section}__{name}{form}"
        for section, names in (
            ("CORE", ("DAGS_FOLDER", "PLUGINS_FOLDER")),
            (
                "BYO",
                (
                    "VENV_CACHE_PATH",
                    "FUNCTION_LIBRARY",
                    "RUNTIMES",
                    "LEDGER_CONN_ID",
                    "PROTECTED_PATHS",
                    "ALLOWED_LOCAL_ROOTS",
                ),
            ),
        )
        for name in names
        for form in ("", "_CMD", "_SECRET")
    ),
)


def _fingerprint() -> tuple[object, ...]:
    """
    What can change the settings while a process runs: inside Airflow only the environment
    (``airflow.cfg`` is read once, at start-up); in the ``byo`` script also ``airflow.cfg``,
    which :func:`~airflow_byo.provider_config.setting` reads on every call. And the working
    directory, against which a relative setting is resolved.
    """
    fixed: tuple[object, ...] = (*(os.environ.get(name) for name in _WATCHED), os.getcwd())
    if provider_config.STANDALONE:
        config = Path(os.environ.get("AIRFLOW_CONFIG") or byo_home().parent / "airflow.cfg").expanduser()
        try:
            info = config.stat()
            fixed += ((info.st_mtime_ns, info.st_size),)
        except OSError:
            fixed += (None,)
    conn_id = _ledger_conn_id(fixed)
    return (*fixed, os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") if conn_id else None)


@lru_cache(maxsize=8)
def _ledger_conn_id(_fingerprint: tuple[object, ...]) -> str:
    return setting("ledger_conn_id")


@dataclass(frozen=True)
class _Settings:
    folders: tuple[tuple[str, str, str], ...]  # (label, path as configured, setting)
    roots: tuple[str, ...]  # [byo] allowed_local_roots as configured


@lru_cache(maxsize=8)
def _settings(_fingerprint: tuple[object, ...]) -> _Settings:
    # Reading them costs ~0.3 ms (nine configuration look-ups), paid once per DAG-parse process
    # instead of once per path: 200 flow specs check 600 paths.
    from airflow_byo.environment import default_venv_cache_path
    from airflow_byo.library import library_path

    home = str(byo_home().parent)
    folders = [
        ("AIRFLOW_HOME", home, ""),
        ("the DAGs folder", _core_setting("dags_folder") or os.path.join(home, "dags"), "[core] dags_folder"),
        (
            "the plugins folder",
            _core_setting("plugins_folder") or os.path.join(home, "plugins"),
            "[core] plugins_folder",
        ),
        ("the venv cache", str(default_venv_cache_path()), "[byo] venv_cache_path"),
        ("the function library", str(library_path()), "[byo] function_library"),
    ]
    if runtimes := setting("runtimes").strip():
        folders.append(("the runtimes file", runtimes, "[byo] runtimes"))
    folders += [("the system folder", folder, "") for folder in SYSTEM_FOLDERS]
    extra = _path_list("protected_paths")
    folders += [("the protected folder", path, "[byo] protected_paths") for path in extra]
    folders += [(file.label, file.path, file.setting) for file in ledger_files()]
    return _Settings(tuple(folders), _path_list("allowed_local_roots"))


@lru_cache(maxsize=8)
def _resolved(settings: _Settings) -> tuple[tuple[ProtectedFolder, ...], tuple[str, ...]]:
    """The protected folders and the allowed roots, by real path."""
    folders = tuple(ProtectedFolder(label, _real(path), key) for label, path, key in settings.folders)
    return folders, tuple(_real(root) for root in settings.roots)


def _policy(extra: Iterable[ProtectedFolder]) -> tuple[list[ProtectedFolder], list[str]]:
    """Every protected folder and file, then ``extra``, by real path; and the allowed roots."""
    folders, roots = _resolved(_settings(_fingerprint()))
    own = [ProtectedFolder(f.label, _real(f.path), f.setting) for f in extra]
    return [*folders, *own], list(roots)


# -- the checks -------------------------------------------------------------------------------------


def _inside(path: str, folder: str) -> bool:
    """Whether normalised absolute ``path`` is ``folder`` or below it, component by component."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _problem(key: str, given: str, real: str, folders: list[ProtectedFolder], roots: list[str]) -> str | None:
    """Why ``key`` = ``given`` (real path ``real``) is refused, or None."""
    via = f" (real path {real})" if real != os.path.normpath(given) else ""
    what = f"{key} {given!r}{via}"
    # Deepest first: the venv cache names a path in it better than the AIRFLOW_HOME around it.
    for folder in sorted(folders, key=lambda folder: len(folder.path), reverse=True):
        if _inside(real, folder.path):
            relation = "is" if real == folder.path else "lies inside"
            return f"{what} {relation} {folder.describe()}: {_WHY}. Fix: choose a directory outside it"
    for folder in folders:  # in the order above: AIRFLOW_HOME first
        if _inside(folder.path, real):
            return (
                f"{what} contains {folder.describe()}: {_WHY}. "
                "Fix: choose a directory that does not contain it"
            )
    if roots and not any(_inside(real, root) for root in roots):
        return (
            f"{what} is outside the allowed local roots {', '.join(roots)} ([byo] allowed_local_roots). "
            "Fix: use a directory inside one of them, or add its root to [byo] allowed_local_roots"
        )
    return None


def check_local_paths(
    paths: Mapping[str, str | os.PathLike[str] | None], *, extra: Iterable[ProtectedFolder] = ()
) -> None:
    """
    Refuse any local path of ``paths`` (key -> path or URL; None and remote URLs are skipped) that
    lies inside or contains a protected folder, or lies outside ``[byo] allowed_local_roots``.

    :param extra: more folders to protect for this caller (e.g. an operator's own venv cache).
    :raises ByoConfigError: naming the key, the path and the protected folder (or the allowed roots).
    """
    local = {
        key: (os.fspath(path), found)
        for key, path in paths.items()
        if path and (found := local_path(os.fspath(path)))
    }
    if not local:
        return
    folders, roots = _policy(extra)
    for key, (given, path) in local.items():
        if problem := _problem(key, given, _real(path), folders, roots):
            raise ByoConfigError(problem)


def check_local_path(
    path: str | os.PathLike[str], key: str, *, extra: Iterable[ProtectedFolder] = ()
) -> None:
    """:func:`check_local_paths` for one path (``key`` names it in the message: ``destination``)."""
    check_local_paths({key: path}, extra=extra)


def check_sample(path: str, key: str) -> None:
    """
    A test run's sample file: the file, and the folder it is read from (the sandbox sees that
    folder, so a sample beside ``airflow.cfg`` would show ``airflow.cfg`` to the function).
    """
    file = local_path(path)
    if file is None:
        return
    check_local_paths({key: path, f"the folder of {key}": os.path.dirname(file)})
