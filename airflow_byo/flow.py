"""
A flow as it runs: what its author declared, resolved once.

Every way into a run or a test builds one :class:`ResolvedFlow` with :meth:`ResolvedFlow.resolve`
from what the user wrote: :class:`~airflow_byo.operators.byo_flow.ByoFlowOperator` when its DAG file
is parsed (and so every spec flow and ``@task.byo``), ``airflow byo test`` and the ``byo`` script
from their arguments (:mod:`airflow_byo.cli.test_arguments`), the BYO Flows page's Test from its
form and the flow's serialized settings. Everything about the function and where it runs comes
from that object: the processor, the named runtime, the runtime config (the runtime's job_config
defaults under the flow's own keys), the effective requirements (the runtime's pins overridden by
the flow's), the sandbox settings and limits, the interpreter. So a Test on the page gets exactly
what the flow's runs get, and a run recomputes nothing (issue 22: the page once tested flows
without their runtime, because each entry point assembled a flow its own way).

Standard library and pydantic only at import: the ``byo`` script resolves flows without Airflow.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.named_runtimes import apply_runtime, flow_requirements
from airflow_byo.processor import ProcessorSource, resolve_processor
from airflow_byo.results import FileTally, RunSummary
from airflow_byo.runtime_config import parse_runtime_config
from airflow_byo.runtimes_file import get_runtime

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from airflow_byo.images.environment import ImageEnvironment
    from airflow_byo.images.model import ImageRoot
    from airflow_byo.named_runtimes import Runtime
    from airflow_byo.runner.child_process import TaskLog
    from airflow_byo.runner.sandbox import Network
    from airflow_byo.runtime_config import JobConfig, RuntimeConfig

__all__ = ["FlowEnvironment", "ResolvedFlow", "SandboxSettings"]


@dataclass(frozen=True)
class SandboxSettings:
    """What the sandbox gives each child of the flow, beyond what every child gets."""

    network: Network
    read_only_paths: tuple[str, ...]
    max_processes: int | None
    max_file_bytes: int | None
    max_memory_bytes: int | None
    #: An image runtime's root file system, Env, WorkingDir and the flow's venv on it (issue 25).
    image: ImageRoot | None = None


@dataclass(frozen=True)
class FlowEnvironment:
    """The interpreter a run's children start in, and how long it took to get it."""

    python: str
    seconds: float = 0.0


@dataclass(frozen=True)
class ResolvedFlow:
    """
    A flow's function and environment, validated and merged: build it with :meth:`resolve`.

    :param processor: the function, as the child loads it.
    :param runtime: the named runtime (``default`` unless the flow picks one).
    :param config: the runtime config, the runtime's job_config defaults applied under the flow's keys.
    :param requirements: the environment's requirements (the runtime's, overridden by the flow's pins).
    :param overrides: ``(runtime pin, flow pin)`` for each base package the flow replaced.
    :param python_interpreter: the flow's own existing interpreter (``python_interpreter=``), if any.
    :param venv_cache_path: where the flow's environment is cached (default ``[byo] venv_cache_path``).
    """

    processor: ProcessorSource
    runtime: Runtime
    config: RuntimeConfig
    requirements: tuple[str, ...] = ()
    overrides: tuple[tuple[str, str], ...] = ()
    python_interpreter: str | None = None
    venv_cache_path: str | None = None

    @classmethod
    def resolve(
        cls,
        processor: str | Callable[..., Any] | ProcessorSource,
        *,
        function_name: str | None = None,
        packages: str | Sequence[str] | None = None,
        runtime: str | None = None,
        runtime_config: str | dict[str, Any] | RuntimeConfig | None = None,
        allow_direct_urls: bool = False,
        python_interpreter: str | None = None,
        venv_cache_path: str | os.PathLike[str] | None = None,
    ) -> ResolvedFlow:
        """
        Resolve what a flow declares, checking everything that can be checked without a file:
        the processor (syntax, function, signature against ``custom_code``), the runtime name, the
        packages, the runtime config. Nothing is built or read from the network.

        :raises ByoError: the first problem, naming the argument and the fix.
        """
        source = (
            processor
            if isinstance(processor, ProcessorSource)
            else resolve_processor(processor, function_name)
        )
        flow_runtime = get_runtime(runtime)  # an unknown name lists the known ones
        if python_interpreter and flow_runtime.image:
            raise ByoConfigError(
                f"python_interpreter cannot be combined with runtime {flow_runtime.name!r}: it runs the "
                f"image {flow_runtime.image} with the image's own Python. Fix: drop python_interpreter, "
                "or pick a runtime without image"
            )
        if python_interpreter and (packages or flow_runtime.packages):
            raise ByoConfigError(
                "packages cannot be combined with python_interpreter: packages are installed into "
                "the flow's own virtualenv; install them into that interpreter instead, or drop "
                "python_interpreter"
                + (f" (runtime {flow_runtime.name!r} has base packages)" if flow_runtime.packages else "")
            )
        requirements = flow_requirements(flow_runtime, packages, allow_direct_urls=allow_direct_urls)
        config = apply_runtime(flow_runtime, parse_runtime_config(runtime_config))
        source.check(list(config.custom_code.args), dict(config.custom_code.kwargs))
        return cls(
            processor=source,
            runtime=flow_runtime,
            config=config,
            requirements=requirements.effective,
            overrides=requirements.overrides,
            python_interpreter=python_interpreter or None,
            venv_cache_path=os.fspath(venv_cache_path) if venv_cache_path else None,
        )

    @property
    def job(self) -> JobConfig:
        return self.config.job_config

    def with_job(self, **values: Any) -> ResolvedFlow:
        """The same flow with some job_config values replaced (the page's Test caps its time)."""
        job = self.job.model_copy(update=values)
        return replace(self, config=self.config.model_copy(update={"job_config": job}))

    @property
    def sandbox(self) -> SandboxSettings:
        """
        The sandbox's network, extra read-only folders and limits for this flow's children, and an
        image runtime's root (prepared by :meth:`environment` first; nothing is fetched here).
        """
        image = None
        if self.runtime.image:
            from airflow_byo.images.environment import prepared_image_root

            image = prepared_image_root(self.runtime, list(self.requirements))
        return replace(self._settings(), image=image)

    def _settings(self) -> SandboxSettings:
        job = self.job
        network: Network = "off" if not job.network else ("host" if job.host_loopback else "user")
        return SandboxSettings(
            network=network,
            read_only_paths=tuple(self.runtime.read_only_paths),
            max_processes=job.max_processes,
            max_file_bytes=job.max_output_mb * 1024 * 1024 if job.max_output_mb else None,
            max_memory_bytes=job.max_memory_mb * 1024 * 1024 if job.max_memory_mb else None,
        )

    def interpreter(self) -> str | None:
        """
        The existing interpreter the flow runs in -- its own ``python_interpreter``, else its
        runtime's ``python`` -- checked on this machine; ``None`` when it runs in a built virtualenv.
        On an image runtime: the image's Python (or the flow's venv on it), the image prepared first.

        :raises ByoConfigError: when that interpreter is not an executable file here.
        """
        if self.runtime.image:
            return self._image_environment().python
        python = self.python_interpreter
        if python and not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise ByoConfigError(
                f"python_interpreter {python!r} is not an executable file on this machine. Fix: install "
                "that interpreter on every worker, or drop python_interpreter to use a built virtualenv"
            )
        return python or self.runtime.checked_python()

    def environment(
        self, log: TaskLog, build: Callable[[list[str], Path | None], str] | None = None
    ) -> FlowEnvironment:
        """
        The flow's interpreter: the existing one, or its virtualenv, built once per set of
        requirements (``build``: how; default :func:`airflow_byo.environment.ensure_environment`).
        Logs which runtime and requirements are in effect.
        """
        started = time.monotonic()
        runtime = self.runtime
        for base, pin in self.overrides:
            log.info("The flow's %s overrides %s of runtime %r", pin, base, runtime.name)
        if runtime.image:
            image = self._image_environment()
            log.info(
                "Runtime %r: image %s (unpacked: %.0f MB), Python %s %s, packages %s",
                runtime.name,
                runtime.image,
                image.image.size / 1e6,
                image.python_version,
                image.python,
                ", ".join(self.requirements) or "(none: the image's Python as it is)",
            )
            return FlowEnvironment(image.python, time.monotonic() - started)
        if python := self.interpreter():
            log.info("Runtime %r: interpreter %s", runtime.name, python)
            return FlowEnvironment(python, time.monotonic() - started)
        log.info("Runtime %r: packages %s", runtime.name, ", ".join(self.requirements) or "(none)")
        if build is None:
            from airflow_byo.environment import ensure_environment

            def build(requirements: list[str], cache: Path | None) -> str:
                return str(ensure_environment(requirements, cache))

        from pathlib import Path

        cache = Path(self.venv_cache_path) if self.venv_cache_path else None
        python = build(list(self.requirements), cache)
        return FlowEnvironment(python, time.monotonic() - started)

    def _image_environment(self) -> ImageEnvironment:
        from airflow_byo.images.environment import prepare_image_environment

        return prepare_image_environment(self.runtime, list(self.requirements))

    def summary(
        self, source: str, destination: str | None, tally: FileTally | None = None, **values: Any
    ) -> RunSummary:
        """The summary of a finished run of this flow: its runtime and requirements, and ``values``."""
        return RunSummary(
            source=source,
            destination=destination,
            tally=tally or FileTally(),
            runtime=self.runtime.name,
            requirements=list(self.requirements),
            **values,
        )

    def describe(self) -> dict[str, Any]:
        """What a run of this flow gets, as JSON (test results carry it: entry points can be compared)."""
        sandbox = self._settings()
        return {
            "runtime": self.runtime.name,
            "image": self.runtime.image,
            "requirements": list(self.requirements),
            "interpreter": self.python_interpreter or self.runtime.python,
            "function_name": self.processor.function_name,
            "job_config": self.job.model_dump(mode="json"),
            "sandbox": {
                "network": sandbox.network,
                "read_only_paths": list(sandbox.read_only_paths),
                "max_processes": sandbox.max_processes,
                "max_file_bytes": sandbox.max_file_bytes,
                "max_memory_bytes": sandbox.max_memory_bytes,
            },
        }
