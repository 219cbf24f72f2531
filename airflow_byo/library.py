"""
The reusable function library: functions saved under a name, with automatic versions.

Each version is one JSON file, ``<library>/<name>/v<N>.json`` (code, function name, packages,
description, who and when), so the library can live anywhere every worker reads: by default
``$AIRFLOW_HOME/byo/functions``; set ``[byo] function_library`` to a directory in the DAGs bundle
(versioned with the DAGs) or on a shared volume. Versions are immutable: saving again makes the
next version, and a flow pinned to ``name@1`` keeps running version 1 -- unless nothing changed:
saving the latest version's code, function name, packages and runtime again returns that version
(``unchanged``) instead of a copy.
"""

from __future__ import annotations

import getpass
import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.packages import parse_packages
from airflow_byo.processor import DEFAULT_FUNCTION_NAME, resolve_processor
from airflow_byo.provider_config import byo_home, setting

__all__ = ["LibraryFunction", "delete", "get", "library_path", "list_functions", "resolve", "save", "uses"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")


@dataclass(frozen=True)
class LibraryFunction:
    """One saved version of a library function."""

    name: str
    version: int
    code: str
    function_name: str
    packages: list[str]
    description: str
    created_by: str
    created_at: float
    runtime: str | None = None  # a named runtime of [byo] runtimes (versions saved before: none)
    #: Returned by :func:`save` when the latest version was the same (never stored).
    unchanged: bool = field(default=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def library_path() -> Path:
    """``[byo] function_library``, else ``$AIRFLOW_HOME/byo/functions``."""
    configured = setting("function_library")
    return Path(configured).expanduser() if configured else byo_home("functions")


def _versions(name: str, root: Path) -> list[int]:
    folder = root / name
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for f in folder.iterdir() if (m := _VERSION_FILE.match(f.name)))


def save(
    name: str,
    code: str,
    *,
    function_name: str = DEFAULT_FUNCTION_NAME,
    packages: str | list[str] | None = None,
    description: str = "",
    runtime: str | None = None,
    root: Path | None = None,
) -> LibraryFunction:
    """
    Validate (syntax, signature, packages, runtime) and save ``code`` as the next version of
    ``name``; when the latest version has the same code, function name, packages and runtime, return
    it (``unchanged=True``) instead.
    """
    if not _NAME.match(name):
        raise ByoConfigError(f"function name {name!r} is not valid: use letters, digits, '_', '-', '.'")
    resolve_processor(code, function_name).check([], {})
    requirements = parse_packages(packages)
    if runtime:
        from airflow_byo.runtimes_file import get_runtime

        get_runtime(runtime)  # an unknown name fails here, listing the known ones
    root = root or library_path()
    latest, wanted = _latest(name, root), (code, function_name, requirements, runtime or None)
    if latest is not None and (latest.code, latest.function_name, latest.packages, latest.runtime) == wanted:
        return replace(latest, unchanged=True)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    while True:  # exclusive create: two savers never get the same version
        version = (_versions(name, root) or [0])[-1] + 1
        entry = LibraryFunction(
            name,
            version,
            code,
            function_name,
            requirements,
            description,
            getpass.getuser(),
            time.time(),
            runtime or None,
        )
        try:
            with open(folder / f"v{version}.json", "x", encoding="utf-8") as handle:
                json.dump({k: v for k, v in asdict(entry).items() if k != "unchanged"}, handle, indent=2)
            return entry
        except FileExistsError:
            continue


def _latest(name: str, root: Path) -> LibraryFunction | None:
    return get(name, root=root) if _versions(name, root) else None


def get(ref: str, *, root: Path | None = None) -> LibraryFunction:
    """``name`` (latest version) or ``name@version``."""
    root = root or library_path()
    name, _, wanted = ref.partition("@")
    versions = _versions(name, root)
    if not versions:
        known = ", ".join(list_functions(root)) or "none"
        raise ByoConfigError(
            f"library function {name!r} does not exist (library {str(root)!r} has: {known}); save it "
            "with `airflow byo functions save` or fix the name"
        )
    if wanted and (not wanted.isdigit() or int(wanted) not in versions):
        raise ByoConfigError(
            f"library function {name!r} has no version {wanted!r}; versions: {', '.join(map(str, versions))}"
        )
    version = int(wanted) if wanted else versions[-1]
    data = json.loads((root / name / f"v{version}.json").read_text())
    return LibraryFunction(**data)


def resolve(
    ref: str, packages: str | list[str] | None = None, runtime: str | None = None
) -> tuple[str, str, Any, str | None]:
    """
    A library function as a flow's processor: ``(code, function_name, packages, runtime)``, where
    the flow's own ``packages`` and ``runtime`` (when given) replace the ones saved with it.
    """
    entry = get(ref)
    packages = packages if packages is not None else entry.packages
    return entry.code, entry.function_name, packages, runtime or entry.runtime


def list_functions(root: Path | None = None) -> dict[str, list[int]]:
    """Every function name with its versions."""
    root = root or library_path()
    if not root.is_dir():
        return {}
    return {d.name: _versions(d.name, root) for d in sorted(root.iterdir()) if _versions(d.name, root)}


def delete(ref: str, *, used_by: list[str] | None = None, root: Path | None = None) -> None:
    """Delete one version (``name@version``), refused while a flow in ``used_by`` uses it."""
    root = root or library_path()
    name, _, version = ref.partition("@")
    if not version:
        raise ByoConfigError(f"give the version to delete, e.g. {name}@1")
    entry = get(ref, root=root)
    if used_by:
        raise ByoConfigError(f"{entry.ref} is used by {', '.join(used_by)}; change those flows first")
    (root / name / f"v{entry.version}.json").unlink()


def uses(spec_function: str, ref: LibraryFunction, latest: int) -> bool:
    """Whether a spec's ``function`` value runs ``ref`` (``name`` means the latest version)."""
    name, _, version = spec_function.partition("@")
    if name != ref.name:
        return False
    return int(version) == ref.version if version else latest == ref.version
