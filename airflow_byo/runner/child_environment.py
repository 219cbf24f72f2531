"""
What a child starts from: an allow-listed environment, and a copy of the stdlib-only runtime.

The child never holds the worker's secrets: it inherits only a few harmless variables. It imports
nothing of the worker's installation but the runtime package, copied where it may read it.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import marshal
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
    Each module comes with its bytecode for this interpreter's version (compiled once per
    process; unchecked-hash ``.pyc``, as the copy is ours and read-only to the child): a child
    of that version starts without compiling the runtime, ~8 ms of every child start (issue 24);
    a child of another version ignores them and compiles, as before.
    """
    package_root = Path(directory) / "airflow_byo"
    target = package_root / "runtime"
    cache = Path(importlib.util.cache_from_source(str(target / "child.py"))).parent
    cache.mkdir(parents=True, exist_ok=True)
    (package_root / "__init__.py").write_text('"""Runtime-only copy of airflow_byo."""\n')
    for source in Path(runtime_package.__file__).parent.glob("*.py"):
        shutil.copyfile(source, target / source.name)
        compiled = _bytecode(str(source), *_version(source))
        if compiled is not None:
            (cache / Path(importlib.util.cache_from_source(source.name)).name).write_bytes(compiled)
    for path in (Path(directory), package_root, target, cache):
        path.chmod(0o755)
    for path in (package_root / "__init__.py", *target.glob("*.py"), *cache.glob("*.pyc")):
        path.chmod(0o644)
    return directory


def _version(source: Path) -> tuple[int, int]:
    info = source.stat()
    return info.st_mtime_ns, info.st_size


@functools.cache
def _bytecode(source: str, mtime_ns: int, size: int) -> bytes | None:
    """
    An unchecked-hash ``.pyc`` of ``source`` as it is now (``mtime_ns``, ``size``: the cache key).
    Its code comes from the worker's own bytecode cache of the module when that is current (as an
    import would take it: ~1 ms for the runtime, where compiling it took ~25 ms of every task's
    first child start, issue 24); else it is compiled.
    """
    try:
        code = importlib.machinery.SourceFileLoader(Path(source).stem, source).get_code(Path(source).stem)
    except (ImportError, OSError, SyntaxError, ValueError):
        return None  # the child compiles it (and reports the error) as it always did
    if code is None:
        return None
    data = bytearray(importlib.util.MAGIC_NUMBER)
    data += (0b01).to_bytes(4, "little")  # hash-based, not checked against the source
    data += importlib.util.source_hash(Path(source).read_bytes())
    data += marshal.dumps(code)
    return bytes(data)
