"""
What a child starts from: an allow-listed environment, and a copy of the stdlib-only runtime.

The child never holds the worker's secrets: it inherits only a few harmless variables. It imports
nothing of the worker's installation but the runtime package, copied where it may read it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import airflow_byo.runtime as runtime_package

__all__ = ["child_environment", "stage_runtime"]

#: Variables the child may inherit; everything else -- AIRFLOW__* settings, connection URIs,
#: cloud credentials -- stays in the worker.
_ENV_ALLOWLIST = ("PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "HOME", "USER", "LOGNAME")


def child_environment() -> dict[str, str]:
    """The environment the child starts with: an allow-list of harmless variables, nothing else."""
    env = {key: os.environ[key] for key in _ENV_ALLOWLIST if key in os.environ}
    env.update({key: value for key, value in os.environ.items() if key.startswith("LC_")})
    # Fewer malloc arenas keep the child's address space small, which matters under RLIMIT_AS.
    env["MALLOC_ARENA_MAX"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stage_runtime(directory: str) -> str:
    """
    Copy the stdlib-only runtime into ``directory`` as an importable ``airflow_byo.runtime``.

    Only these few files are shipped: the rest of airflow_byo (and Airflow itself) stays out of
    the child's ``sys.path``. Readable by all: a root worker's child runs as a uid of its own.
    """
    package_root = Path(directory) / "airflow_byo"
    target = package_root / "runtime"
    target.mkdir(parents=True, exist_ok=True)
    (package_root / "__init__.py").write_text('"""Runtime-only copy of airflow_byo."""\n')
    for source in Path(runtime_package.__file__).parent.glob("*.py"):
        shutil.copyfile(source, target / source.name)
    for path in (Path(directory), package_root, target):
        path.chmod(0o755)
    for path in (package_root / "__init__.py", *target.glob("*.py")):
        path.chmod(0o644)
    return directory
