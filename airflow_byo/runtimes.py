"""
Named runtimes: base packages, interpreter, sandbox settings and default limits, picked by name.

The seed's "custom runtimes" (a container image per runtime, "common packages included; users can
override them"), as one YAML or JSON file named by ``[byo] runtimes`` (issue #12, item 7)::

    runtimes:
      data:
        description: pandas + pyarrow
        packages: ["pandas==2.2.3", "pyarrow==18.1.0"]
        network: false                      # sandbox default for flows on this runtime
        read_only_paths: [/opt/reference-data]
        job_config: {timeout_seconds: 600, max_memory_mb: 4096}
      legacy:
        python: /opt/legacy/bin/python      # an existing interpreter, used as it is

A flow picks one with ``runtime="data"`` and may add packages; a flow's requirement for a package
the runtime also names replaces the runtime's (matched by PEP 503 normalised name, extras ignored
for matching). A flow's ``job_config`` keys win over the runtime's defaults.

Decisions:

- ``default`` always exists, has no base packages and no defaults, and is reserved: a file may not
  define it, so flows that name no runtime keep exactly the environment their own packages make.
- ``python`` is an existing interpreter (like the operator's ``python_interpreter``): flows run in
  it as it is, with what is installed there, so such a runtime has no ``packages`` and flows on it
  cannot add any. Without ``python`` a runtime is a cached virtualenv of the worker's Python.
- The file is read lazily (only when a runtime other than ``default`` is asked for) and cached by
  path and modification time, so DAG parsing pays for it once per change.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from airflow_byo.exceptions import ByoConfigError, ByoPackageError
from airflow_byo.flow_config import JobConfig, RuntimeConfig
from airflow_byo.packages import parse_packages
from airflow_byo.provider_config import setting

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import yaml

__all__ = [
    "DEFAULT_RUNTIME",
    "FlowRequirements",
    "Runtime",
    "RuntimeDefinition",
    "RuntimesFile",
    "apply_runtime",
    "available_runtimes",
    "effective_job_config",
    "flow_requirements",
    "get_runtime",
    "load_runtimes",
]

DEFAULT = "default"
SETTING = "[byo] runtimes"
_ENV = "AIRFLOW__BYO__RUNTIMES"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_FIX_START = re.compile(r"\. (?=[A-Z])")  # packages.py messages: "<problem>. <Fix sentence>"


def _key(requirement: str) -> str:
    """The PEP 503 normalised name of a (valid) requirement: what a flow's pin overrides by."""
    return canonicalize_name(Requirement(requirement).name)


def _requirement(entry: str) -> str:
    try:
        return parse_packages([entry])[0]
    except ByoPackageError as exc:
        raise ValueError(str(exc).removeprefix("packages: ")) from None


def _unique_names(entries: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for entry in entries:
        if (key := _key(entry)) in seen:
            raise ValueError(
                f"{entry!r} names the same package as {seen[key]!r}. Fix: keep one entry per package"
            )
        seen[key] = entry
    return entries


def _absolute(path: str) -> str:
    if not os.path.isabs(path) or os.path.normpath(path) != path.rstrip("/") or path == "/":
        raise ValueError(f"{path!r} must be an absolute, normalised path below / (e.g. /opt/reference-data)")
    return path.rstrip("/")


def _not_protected(path: str) -> str:
    """A read-only path must not show the child a platform folder (:mod:`airflow_byo.path_policy`)."""
    from airflow_byo.path_policy import check_local_path

    try:
        check_local_path(path, "read_only_paths")
    except ByoConfigError as exc:  # pydantic reports it at the entry's line
        raise ValueError(str(exc)) from None
    return path


_Requirement = Annotated[str, AfterValidator(_requirement)]
_ReadOnlyPath = Annotated[str, AfterValidator(_absolute), AfterValidator(_not_protected)]


class RuntimeDefinition(BaseModel):
    """One entry under ``runtimes:`` in the runtimes file."""

    # Built on first use, not at import: this module is imported at DAG-parse time.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    description: str = Field("", description="What the runtime is for; shown by the CLI and in logs.")
    packages: Annotated[tuple[_Requirement, ...], AfterValidator(_unique_names)] = Field(
        (),
        description="Base PEP 508 requirements of every flow on this runtime; a flow's requirement "
        "for the same package (PEP 503 normalised name) replaces the runtime's.",
    )
    python: Annotated[str, AfterValidator(_absolute)] | None = Field(
        None,
        description="An existing interpreter to run flows in as it is (no virtualenv is built; the "
        "runtime then has no packages and flows cannot add any). Unset: a cached virtualenv of the "
        "worker's Python holding the effective packages.",
    )
    network: bool | None = Field(
        None,
        description="Sandbox network default for flows on this runtime (a flow's job_config.network "
        "wins); unset means the platform default, off.",
    )
    read_only_paths: tuple[_ReadOnlyPath, ...] = Field(
        (),
        description="Extra host paths bound read-only, at the same place, into every child's sandbox; "
        "none may lie inside or contain a platform folder (see [byo] protected_paths).",
    )
    job_config: JobConfig = Field(
        default_factory=JobConfig,
        description="Default job_config of flows on this runtime (limits, timeouts, ...); only the keys "
        "written here are defaults, a flow's own keys win.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RuntimeDefinition:
        if self.python and self.packages:
            raise ValueError(
                "python and packages cannot be combined: an existing interpreter is used as it is. "
                "Fix: install the packages into that interpreter and drop packages, or drop python"
            )
        if "network" in self.job_config.model_fields_set:
            raise ValueError(
                "job_config.network is set here as the runtime's own 'network' key. "
                "Fix: move it up one level (network: true)"
            )
        return self


class RuntimesFile(BaseModel):
    """The whole ``[byo] runtimes`` file."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    runtimes: dict[str, RuntimeDefinition] = Field(
        description="Runtimes by name (letters, digits, '_', '.', '-'; 'default' is built in)."
    )


class Runtime(RuntimeDefinition):
    """A runtime as flows use it: its definition, its name and where it was defined."""

    name: str = Field(description="The name flows pick it by.")
    source: str = Field("built-in", description="'<file>:<line>' of its definition, or 'built-in'.")

    @property
    def job_defaults(self) -> dict[str, Any]:
        """The job_config keys this runtime sets (only those: the rest stay platform defaults)."""
        return self.job_config.model_dump(include=self.job_config.model_fields_set)

    def checked_python(self) -> str | None:
        """
        The runtime's interpreter (``None``: build a virtualenv), checked on this machine.

        :raises ByoConfigError: when it is not an executable file here.
        """
        if self.python and not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise ByoConfigError(
                f"runtime {self.name!r} ({self.source}): python {self.python!r} is not an executable "
                f"file on this machine. Fix: install it on every worker or correct {SETTING}"
            )
        return self.python


#: The built-in runtime (constructed without validation: there is nothing to validate, and it keeps
#: the models unbuilt until a runtimes file is actually read).
DEFAULT_RUNTIME = Runtime.model_construct(
    name=DEFAULT, description="No base packages; the flow's own packages only."
)


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


# -- what a flow on a runtime gets -----------------------------------------------------------------
@dataclass(frozen=True)
class FlowRequirements:
    """What a flow on a runtime installs, and which of the runtime's pins the flow replaced."""

    effective: tuple[str, ...]
    #: ``(runtime's requirement, flow's requirement)`` for every base pin the flow replaces (for logs).
    overrides: tuple[tuple[str, str], ...] = ()


def flow_requirements(
    runtime: Runtime, packages: str | Iterable[str] | None, *, allow_direct_urls: bool = False
) -> FlowRequirements:
    """
    The requirements of a flow on ``runtime``: the runtime's, each replaced by the flow's
    requirement for the same package (normalised name, extras ignored for matching), then the
    flow's other packages. Environments are cached by the sorted list, so order is only for logs.

    :raises ByoPackageError: for an invalid flow package (see :func:`~airflow_byo.packages.parse_packages`).
    :raises ByoConfigError: when the runtime is an existing interpreter and the flow adds packages.
    """
    flow = parse_packages(packages, allow_direct_urls=allow_direct_urls)
    if runtime.python and flow:
        raise ByoConfigError(
            f"packages {flow} cannot be added on runtime {runtime.name!r}: it runs the existing "
            f"interpreter {runtime.python} as it is. Fix: drop packages, or pick a runtime without "
            f"'python' (see {SETTING})"
        )
    by_name = {_key(requirement): requirement for requirement in flow}
    overrides = tuple((base, by_name[_key(base)]) for base in runtime.packages if _key(base) in by_name)
    effective = [by_name.pop(_key(base), base) for base in runtime.packages]
    return FlowRequirements((*effective, *by_name.values()), overrides)


def effective_job_config(runtime: Runtime, job_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """
    A flow's ``job_config`` over the runtime's defaults (its limits, and ``network`` when the
    runtime sets it): the flow's own keys win. Validate the result with ``parse_runtime_config``.
    """
    defaults = runtime.job_defaults
    if runtime.network is not None:
        defaults["network"] = runtime.network
    return {**defaults, **(job_config or {})}


def apply_runtime(runtime: Runtime, config: RuntimeConfig) -> RuntimeConfig:
    """
    ``config`` (already validated) with the runtime's defaults under the keys the flow wrote.

    :raises ByoConfigError: if the merged job_config is invalid (e.g. ``network`` before JobConfig has it).
    """
    own = config.job_config.model_dump(include=config.job_config.model_fields_set)
    merged = effective_job_config(runtime, own)
    if merged == own:
        return config
    try:
        job = JobConfig.model_validate(merged)
    except ValidationError as exc:
        raise ByoConfigError(
            f"runtime {runtime.name!r} ({runtime.source}): invalid job_config: {exc}"
        ) from None
    return config.model_copy(update={"job_config": job})
