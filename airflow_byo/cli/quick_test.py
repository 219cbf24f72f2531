"""
``byo test`` on a local sample, in this process, without importing Airflow.

The steps of the operator's test mode (``ByoFlowOperator.preview``), through the same functions:
the processor resolved and checked against the runtime config, the flow's runtime and packages,
the same cached environment, :func:`~airflow_byo.runner.preview.preview_file` in the same
sandbox, the same text (:mod:`.test_output`). Only finding the environment differs: a warm one is
looked up in :mod:`.warm_environments`; a cold one is built through Airflow's machinery (which
imports Airflow, once).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_byo.cli.test_output import VERBOSE_HINT, quiet_logging, result_text
from airflow_byo.exceptions import ByoConfigError, ByoFilesFailedError

if TYPE_CHECKING:
    import argparse

    from airflow_byo.runtimes import Runtime

__all__ = ["run"]


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ByoConfigError(f"cannot read --code {path!r}: {exc.strerror}") from None


def _logger(verbose: bool) -> logging.Logger:
    log = logging.getLogger("airflow_byo.test")
    log.propagate = False
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    else:
        quiet_logging()
    return log


def _python(runtime: Runtime, packages: Any, log: logging.Logger) -> str:
    """The interpreter of the flow's environment: the runtime's, a warm one, or one built now."""
    from airflow_byo.cli import warm_environments
    from airflow_byo.environment import default_venv_cache_path, ensure_environment
    from airflow_byo.runtimes import effective_packages

    requirements = effective_packages(runtime, packages)
    if python := runtime.checked_python():
        return python
    cache = default_venv_cache_path()
    if python := warm_environments.lookup(cache, requirements):
        log.info("Runtime %r: packages %s (warm: %s)", runtime.name, ", ".join(requirements) or "-", python)
        return python
    log.info("Building the environment for %s (imports Airflow once)", ", ".join(requirements) or "-")
    import airflow.providers.standard.operators.python  # noqa: F401 - the builder; sets up Airflow's logs

    if not log.isEnabledFor(logging.INFO):
        quiet_logging()  # again: structlog is loaded now
    python = str(ensure_environment(requirements, cache))
    warm_environments.remember(cache, requirements, python)
    return python


def run(args: argparse.Namespace) -> str:
    """Run ``args.code`` or ``args.function`` on the local ``args.sample``; the text to print."""
    from airflow_byo.flow_config import parse_runtime_config
    from airflow_byo.path_policy import check_sample
    from airflow_byo.processor import resolve_processor
    from airflow_byo.runner.flow_runner import FlowRunner
    from airflow_byo.runner.preview import locate_test_file, preview_file
    from airflow_byo.runtimes import apply_runtime, get_runtime

    if [bool(args.code), bool(args.function)].count(True) != 1:
        raise ByoConfigError("give exactly one of --code FILE, --function NAME[@VERSION] or --spec FILE")
    log = _logger(args.verbose)
    function_name, packages, runtime_name = args.function_name, args.packages, args.runtime
    if args.code:
        code = _read(args.code)
    else:
        from airflow_byo import library

        code, function_name, packages, runtime_name = library.resolve(args.function, packages, runtime_name)
    processor = resolve_processor(code, function_name)
    runtime = get_runtime(runtime_name)
    config = apply_runtime(runtime, parse_runtime_config(args.runtime_config))
    processor.check(list(config.custom_code.args), dict(config.custom_code.kwargs))
    check_sample(args.sample, "sample")  # the operator's test mode checks it the same way
    location, file = locate_test_file(args.sample, None)
    runner = FlowRunner(
        processor=processor,
        config=config,
        python=args.python or _python(runtime, packages, log),
        log=log,
        read_only_paths=runtime.read_only_paths,
    )
    summary, previews = preview_file(runner, location, file)
    if summary.failed:
        failure = summary.failed[0]
        hint = "" if args.verbose else f" {VERBOSE_HINT}"
        raise ByoFilesFailedError(
            f"test run failed on {file.url}: {failure.error_type}: {failure.error}{hint}"
        )
    return result_text(summary.as_dict() | {"preview": [p.as_dict() for p in previews]})
