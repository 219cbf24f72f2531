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
      gis:
        image: registry.example.com/gis/gdal:3.9@sha256:<digest>   # an OCI image (issue 25)
        registry_conn_id: gis_registry       # an Airflow connection for a private registry
        packages: ["shapely==2.0.6"]         # installed on top, with the image's own Python

A flow picks one with ``runtime="data"`` and may add packages; a flow's requirement for a package
the runtime also names replaces the runtime's (matched by PEP 503 normalised name, extras ignored
for matching). A flow's ``job_config`` keys win over the runtime's defaults.

Decisions:

- ``default`` always exists, has no base packages and no defaults, and is reserved: a file may not
  define it, so flows that name no runtime keep exactly the environment their own packages make.
- ``python`` is an existing interpreter (like the operator's ``python_interpreter``): flows run in
  it as it is, with what is installed there, so such a runtime has no ``packages`` and flows on it
  cannot add any. Without ``python`` a runtime is a cached virtualenv of the worker's Python.
- ``image`` is an OCI image pinned by digest, run daemonless under the sandbox with the image's
  root file system at ``/`` (:mod:`airflow_byo.images`). ``python`` is then a path inside the image
  (default: found on the image's PATH), and packages -- the runtime's and the flow's -- go into a
  virtualenv built with that Python on top of the image's own site-packages.

This module holds the models and what a flow on a runtime gets (:func:`flow_requirements`,
:func:`apply_runtime`); :mod:`airflow_byo.runtimes_file` reads the file (lazily, cached until it
changes) and picks a runtime by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from airflow_byo.exceptions import ByoConfigError, ByoPackageError
from airflow_byo.packages import parse_packages
from airflow_byo.runtime_config import JobConfig, RuntimeConfig

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from airflow_byo.images.reference import ImageReference

__all__ = [
    "DEFAULT",
    "DEFAULT_RUNTIME",
    "SETTING",
    "FlowRequirements",
    "Runtime",
    "RuntimeDefinition",
    "RuntimesFile",
    "apply_runtime",
    "effective_job_config",
    "flow_requirements",
]

DEFAULT = "default"
SETTING = "[byo] runtimes"


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


def _image(text: str) -> str:
    from airflow_byo.images.reference import parse_reference

    parse_reference(text)  # ValueError: reported at the entry's line
    return text.strip()


def _not_protected(path: str) -> str:
    """A read-only path must not show the child a platform folder (:mod:`airflow_byo.path_policy`)."""
    from airflow_byo.path_policy import check_local_path

    try:
        check_local_path(path, "read_only_paths")
    except ByoConfigError as exc:  # pydantic reports it at the entry's line
        raise ValueError(str(exc)) from None
    return path


_Requirement = Annotated[str, AfterValidator(_requirement)]
_Image = Annotated[str, AfterValidator(_image)]
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
        "worker's Python holding the effective packages. With image: the interpreter's path inside "
        "the image (default: python3 or python on the image's PATH).",
    )
    image: _Image | None = Field(
        None,
        description="An OCI image pinned by digest (a registry reference, oci:<layout dir>, or "
        "docker-archive:<tarball>), run daemonless in the sandbox with its root file system at / "
        "(read-only), its Env and WorkingDir. Packages are installed on top with the image's Python.",
    )
    registry_conn_id: str | None = Field(
        None,
        description="The Airflow connection whose login and password the registry of image takes "
        "(a private registry); unset: anonymous, or the worker's own container auth file.",
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
        if self.registry_conn_id and not (self.image and self.image_reference.transport == "docker"):
            raise ValueError(
                "registry_conn_id is only for an image from a registry. Fix: drop registry_conn_id, "
                "or set image to a registry reference (registry/repository@sha256:<digest>)"
            )
        if self.python and self.packages and not self.image:
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

    @property
    def image_reference(self) -> ImageReference:
        """The parsed ``image`` (only for an image runtime)."""
        from airflow_byo.images.reference import parse_reference

        assert self.image is not None
        return parse_reference(self.image)


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
        if self.image:  # a path inside the image: never looked up (or run) on the host
            return None
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
    if runtime.python and flow and not runtime.image:
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
