"""ByoFlowOperator: run a user's function on the files of a source, writing to a destination."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_byo.config import RuntimeConfig, parse_runtime_config
from airflow_byo.exceptions import ByoConfigError, ByoFilesFailedError
from airflow_byo.flow import FlowRunner
from airflow_byo.packages import parse_packages
from airflow_byo.processor import ProcessorSource, resolve_processor
from airflow_byo.storage import FileFilter, Location, parse_datetime
from airflow_byo.summary import RunSummary

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from airflow.sdk import Context

__all__ = ["ByoFlowOperator"]

#: ``params`` key that switches a run to test mode (``airflow tasks test ... -t '{"test_file": ...}'``).
TEST_FILE_PARAM = "test_file"


def _is_templated(value: Any) -> bool:
    """True when ``value`` still holds Jinja markup, i.e. can only be validated after rendering."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return "{{" in text or "{%" in text


class ByoFlowOperator(BaseOperator):
    """
    Run your own Python function on every file of a source, in an isolated virtualenv.

    The function receives each file and a context (see :mod:`airflow_byo.runtime.contract`) and
    returns or writes outputs, which are published atomically to the destination. The task's
    return value is a compact run summary. With ``params.test_file`` set (e.g. ``airflow tasks
    test <dag> <task> -t '{"test_file": "/path/sample.csv"}'``) it runs the function on that one
    file, logs a preview of the outputs and writes nothing.

    :param source: directory or URL to read files from (templated).
    :param destination: directory or URL to write outputs to (templated).
    :param processor: inline code, ``"package.module:function"``, or a Python function.
    :param function_name: function to call in inline code (default ``process``).
    :param source_conn_id: Airflow connection for a remote source (templated).
    :param destination_conn_id: Airflow connection for a remote destination (templated).
    :param include: globs a file must match, on its relative path or name (templated).
    :param exclude: globs that exclude a file (templated).
    :param recursive: also list files in sub-directories.
    :param modified_after: only files modified after this time (datetime or ISO string, templated).
    :param min_size: only files of at least this many bytes.
    :param max_size: only files of at most this many bytes.
    :param packages: PEP 508 requirements, ``"p1==1.0.1,p2==0.0.2"`` or a list (templated).
    :param runtime_config: runtime variables & configuration, a dict or JSON string with optional
        ``custom_code`` and ``job_config`` keys (templated).
    :param allow_direct_urls: accept ``name @ https://...`` requirements in ``packages``.
    :param python_interpreter: run in this existing interpreter instead of a built virtualenv;
        ``packages`` must then be empty (install them into that interpreter yourself).
    :param venv_cache_path: where environments are cached (default ``[byo] venv_cache_path``).
    """

    template_fields: Sequence[str] = (
        "source",
        "source_conn_id",
        "destination",
        "destination_conn_id",
        "include",
        "exclude",
        "modified_after",
        "packages",
        "runtime_config",
    )
    template_fields_renderers = {"runtime_config": "json"}
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        source: str,
        destination: str,
        processor: str | Callable[..., Any],
        function_name: str | None = None,
        source_conn_id: str | None = None,
        destination_conn_id: str | None = None,
        include: Sequence[str] | str = ("*",),
        exclude: Sequence[str] | str = (),
        recursive: bool = True,
        modified_after: datetime | str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        packages: str | Sequence[str] | None = None,
        runtime_config: str | dict[str, Any] | None = None,
        allow_direct_urls: bool = False,
        python_interpreter: str | None = None,
        venv_cache_path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.destination = destination
        self.source_conn_id = source_conn_id
        self.destination_conn_id = destination_conn_id
        self.include = include
        self.exclude = exclude
        self.recursive = recursive
        self.modified_after = modified_after
        self.min_size = min_size
        self.max_size = max_size
        self.packages = packages
        self.runtime_config = runtime_config
        self.allow_direct_urls = allow_direct_urls
        self.python_interpreter = python_interpreter
        self.venv_cache_path = venv_cache_path
        # Resolved and checked at parse time: a broken processor or config is an import error
        # of the DAG file, long before a worker picks the task up.
        self.processor_source: ProcessorSource = resolve_processor(processor, function_name)
        if python_interpreter and packages:
            raise ByoConfigError(
                "packages cannot be combined with python_interpreter: packages are installed into "
                "the flow's own virtualenv; install them into that interpreter instead, or drop "
                "python_interpreter"
            )
        if not _is_templated(packages):
            parse_packages(packages, allow_direct_urls=allow_direct_urls)
        if not _is_templated(runtime_config):
            self._checked_config()
        if not _is_templated([include, exclude, modified_after]):
            self._file_filter()

    # -- validation ----------------------------------------------------------------------------
    def _checked_config(self) -> RuntimeConfig:
        config = parse_runtime_config(self.runtime_config)
        self.processor_source.check(list(config.custom_code.args), dict(config.custom_code.kwargs))
        return config

    def _file_filter(self) -> FileFilter:
        return FileFilter(
            include=tuple([self.include] if isinstance(self.include, str) else self.include),
            exclude=tuple([self.exclude] if isinstance(self.exclude, str) else self.exclude),
            recursive=self.recursive,
            modified_after=parse_datetime(self.modified_after, "modified_after"),
            min_size=self.min_size,
            max_size=self.max_size,
        )

    # -- environment ---------------------------------------------------------------------------
    def _python(self) -> str:
        if self.python_interpreter:
            return self.python_interpreter
        from airflow_byo.environment import ensure_environment

        requirements = parse_packages(self.packages, allow_direct_urls=self.allow_direct_urls)
        cache = Path(self.venv_cache_path) if self.venv_cache_path else None
        return str(ensure_environment(requirements, cache))

    def _runner(self, config: RuntimeConfig) -> tuple[FlowRunner, float]:
        started = time.monotonic()
        python = self._python()
        runner = FlowRunner(processor=self.processor_source, config=config, python=python, log=self.log)
        return runner, time.monotonic() - started

    # -- execution -----------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        config = self._checked_config()
        params = context.get("params") or {}
        test_file = params.get(TEST_FILE_PARAM)
        if test_file:
            return self._execute_test(str(test_file), config)

        source = Location(self.source, self.source_conn_id, role="source")
        destination = Location(self.destination, self.destination_conn_id, role="destination")
        files = source.list_files(self._file_filter())
        self.log.info("Found %d file(s) in %s", len(files), source.describe())
        if not files:
            summary = RunSummary(source=source.url, destination=destination.url)
        else:
            runner, environment_seconds = self._runner(config)
            summary = runner.run(source, destination, files)
            summary.environment_seconds = environment_seconds
        self.log.info("%s", summary.format_table())
        result = summary.as_dict()
        if summary.failed:
            # The task fails, but the summary still reaches XCom so the failures can be inspected.
            context["ti"].xcom_push(key="return_value", value=result)
            names = ", ".join(f.url for f in summary.failed[:10])
            more = f" and {len(summary.failed) - 10} more" if len(summary.failed) > 10 else ""
            raise ByoFilesFailedError(
                f"{len(summary.failed)} of {summary.files_seen} file(s) failed: {names}{more}. "
                "The log above shows each error and traceback; the XCom holds the run summary"
            )
        return result

    def _execute_test(self, test_file: str, config: RuntimeConfig) -> dict[str, Any]:
        if "://" in test_file and not test_file.startswith("file://"):
            parent, _, name = test_file.rstrip("/").rpartition("/")
            location = Location(parent, self.source_conn_id, role="test_file")
        else:
            path = os.path.abspath(os.path.expanduser(test_file.removeprefix("file://")))
            parent, name = os.path.split(path)
            location = Location(parent, role="test_file")
        file = location.file_info(name)
        self.log.info(
            "Test mode: running the processor on %s; nothing is written to the destination", file.url
        )
        runner, environment_seconds = self._runner(config)
        summary, previews = runner.test(location, file)
        summary.environment_seconds = environment_seconds
        for preview in previews:
            records = f", {preview.records} records" if preview.records is not None else ""
            body = "\n".join(f"    {line}" for line in preview.lines)
            more = "\n    ..." if preview.truncated else ""
            self.log.info("Output %s (%d bytes%s):\n%s%s", preview.name, preview.size, records, body, more)
        if not previews:
            self.log.info("The processor produced no output for %s", file.url)
        self.log.info("%s", summary.format_table())
        result = summary.as_dict() | {"preview": [p.as_dict() for p in previews]}
        if summary.failed:
            failure = summary.failed[0]
            raise ByoFilesFailedError(f"test run failed on {file.url}: {failure.error_type}: {failure.error}")
        return result
