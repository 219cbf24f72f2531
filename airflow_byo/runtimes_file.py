"""
The ``[byo] runtimes`` file: reading and validating it (every problem at its file and line), and
picking a runtime by name (:func:`get_runtime`).

What a runtime is and what a flow on it gets: :mod:`airflow_byo.named_runtimes`. The file is read
lazily -- only when a runtime other than ``default`` is asked for -- and cached by path,
modification time, size and inode, so DAG parsing pays for it once per change.
"""

from __future__ import annotations

import difflib
import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.named_runtimes import (
    DEFAULT,
    DEFAULT_RUNTIME,
    SETTING,
    Runtime,
    RuntimeDefinition,
    RuntimesFile,
)
from airflow_byo.provider_config import setting
from airflow_byo.runtime_config import JobConfig

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

    import yaml

__all__ = ["available_runtimes", "get_runtime", "load_runtimes"]

_ENV = "AIRFLOW__BYO__RUNTIMES"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_FIX_START = re.compile(r"\. (?=[A-Z])")  # packages.py messages: "<problem>. <Fix sentence>"


# -- loading ---------------------------------------------------------------------------------------
_cache: dict[str, tuple[tuple[int, int, int], dict[str, Runtime]]] = {}
_cache_lock = threading.Lock()


def load_runtimes(path: str | os.PathLike[str]) -> dict[str, Runtime]:
    """
    The runtimes defined in one file (without ``default``), cached until the file changes.

    :raises ByoConfigError: ``<file>:<line>: runtimes.<name>.<field>: <problem>. Fix: <fix>`` for
        every problem, or naming ``[byo] runtimes`` when the file cannot be read.
    """
    file = Path(path).expanduser()
    try:
        stat = file.stat()
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = _cache.get(str(file))
        if cached and cached[0] == key:
            return cached[1]
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "the file does not exist" if isinstance(exc, FileNotFoundError) else str(exc)
        raise ByoConfigError(
            f"{SETTING} = {str(path)!r}: cannot read the runtimes file: {reason}. Fix: create it "
            f"(a YAML/JSON mapping with a 'runtimes' key), or correct or unset {SETTING} ({_ENV})"
        ) from None
    runtimes = _parse(file, text)
    with _cache_lock:
        _cache[str(file)] = (key, runtimes)
    return runtimes


def _parse(file: Path, text: str) -> dict[str, Runtime]:
    import yaml  # only when a runtimes file is actually read

    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    is_json = file.suffix.lower() == ".json"
    try:
        if is_json:
            data = json.loads(text)
            # Raw tabs are invalid inside JSON strings, so this keeps lines and only helps YAML.
            node = yaml.compose(text.replace("\t", " "), Loader=loader_class)
        else:
            loader = loader_class(text)
            try:
                node = loader.get_single_node()
                data = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
    except json.JSONDecodeError as exc:
        raise ByoConfigError(f"{file}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}" if mark is not None else "1"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ByoConfigError(
            f"{file}:{where}: not valid {'JSON' if is_json else 'YAML'}: {problem}. "
            "Fix: correct the syntax at that line (indentation, quotes, a missing ':')"
        ) from None
    if not isinstance(data, dict):
        raise ByoConfigError(
            f"{file}:1: a runtimes file is a mapping with a 'runtimes' key. "
            "Fix: start it with 'runtimes:' and one entry per runtime name"
        )
    problems = _name_problems(file, node)
    try:
        parsed = RuntimesFile.model_validate(data)
    except ValidationError as exc:
        # A name that is not a string is reported above, with its line and how to quote it.
        errors = [error for error in exc.errors() if "[key]" not in error["loc"]]
        problems += [_format_error(file, node, error) for error in errors]
    if problems:  # in file order: "<file>:<line>: ..."
        problems.sort(key=lambda problem: int(problem[len(str(file)) + 1 :].split(":", 1)[0]))
        raise ByoConfigError("\n".join(problems))
    return {
        name: Runtime(
            **{field: getattr(definition, field) for field in RuntimeDefinition.model_fields},
            name=name,
            source=f"{file}:{_line_of(node, ('runtimes', name))}",
        )
        for name, definition in parsed.runtimes.items()
    }


def _name_problems(file: Path, node: yaml.Node | None) -> list[str]:
    """Names as written in the file: duplicates, ``default``, YAML 1.1 booleans (``off:``), syntax."""
    problems = []
    mapping = (_step(node, "runtimes") or (None, 0))[0]
    seen: set[str] = set()
    for key_node, _ in getattr(mapping, "value", []):
        name = str(key_node.value)
        where = f"{file}:{key_node.start_mark.line + 1}: runtimes.{name}"
        if not str(key_node.tag).endswith(":str"):
            problems.append(
                f"{where}: YAML reads this name as a {key_node.tag.rsplit(':', 1)[-1]}, not a string. "
                f"Fix: quote it ('{name}') or pick another name"
            )
        elif name in seen:  # YAML and JSON would silently keep the last one
            problems.append(f"{where}: defined twice. Fix: keep one definition per name")
        elif name == DEFAULT:
            problems.append(
                f"{where}: 'default' is built in (no base packages, so flows without a runtime keep "
                "exactly their own packages). Fix: give this runtime another name"
            )
        elif not _NAME.match(name):
            problems.append(
                f"{where}: not a valid runtime name. Fix: use letters, digits, '_', '.' or '-', "
                "starting with a letter (e.g. data, ml-gpu)"
            )
        seen.add(name)
    return problems


def _step(node: yaml.Node | None, key: Any) -> tuple[yaml.Node, int] | None:
    """The child at ``key`` and the line it is written on (a mapping entry: its key's line)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        found = next(((k, v) for k, v in node.value if k.value == str(key)), None)
        return (found[1], found[0].start_mark.line + 1) if found else None
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return node.value[key], node.value[key].start_mark.line + 1
    return None


def _line_of(node: yaml.Node | None, loc: Iterable[Any]) -> int:
    """The 1-based line of the entry at ``loc``, or of its deepest existing parent."""
    line = node.start_mark.line + 1 if node is not None else 1
    for key in loc:
        found = _step(node, key)
        if found is None:
            break
        node, line = found
    return line


def _dotted(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(file)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    if len(loc) == 1:
        return RuntimesFile
    if len(loc) == 3 and loc[0] == "runtimes":
        return RuntimeDefinition
    if len(loc) == 4 and loc[2] == "job_config":
        return JobConfig
    return None


def _format_error(file: Path, node: yaml.Node | None, error: Any) -> str:
    loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    fix = ""
    if error["type"] == "extra_forbidden":
        model = _model_at(loc)
        allowed = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message = "unknown key"
        fix = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
    elif error["type"] == "missing":
        fix = f"add {loc[-1]!r}"
    elif "Fix: " in message:
        message, _, fix = message.partition(". Fix: ")
    elif error["type"] == "value_error" and (split := _FIX_START.search(message)):
        message, fix = message[: split.start()], message[split.end() :]
    elif "input" in error and error["type"] != "value_error":
        message = f"{message} (got {error['input']!r})"
    where = f"{file}:{_line_of(node, loc)}: {_dotted(loc)}: {message}"
    return f"{where}. Fix: {fix}" if fix else where


# -- picking a runtime ------------------------------------------------------------------------------
def available_runtimes() -> dict[str, Runtime]:
    """Every runtime flows may pick here: ``default`` and those of ``[byo] runtimes`` (if set)."""
    path = setting("runtimes").strip()
    return {DEFAULT: DEFAULT_RUNTIME, **(load_runtimes(path) if path else {})}


def get_runtime(name: str | None) -> Runtime:
    """
    The runtime called ``name`` (``None`` or ``"default"``: the built-in one, no file read).

    :raises ByoConfigError: for an unknown name (listing the known ones and naming
        ``[byo] runtimes``), or an unreadable/invalid runtimes file.
    """
    if name is None or name == DEFAULT:
        return DEFAULT_RUNTIME
    path = setting("runtimes").strip()
    if not path:
        raise ByoConfigError(
            f"runtime {name!r} is not defined: {SETTING} is not set, so only 'default' exists. "
            f"Fix: point {SETTING} ({_ENV}) at a YAML/JSON file defining {name!r}, or drop the runtime"
        )
    runtimes = available_runtimes()
    if name not in runtimes:
        close = difflib.get_close_matches(name, list(runtimes), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ByoConfigError(
            f"unknown runtime {name!r}; known runtimes: {', '.join(sorted(runtimes))} "
            f"(from {SETTING} = {path}). Fix: use one of those{hint}, or define {name!r} in that file"
        )
    return runtimes[name]
