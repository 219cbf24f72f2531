"""
The ``test`` command, one implementation for ``airflow byo test`` and ``byo test``.

The flow is resolved from the arguments as every entry point resolves one
(:meth:`~airflow_byo.flow.ResolvedFlow.resolve`: ``--code``, a library ``--function`` or a
``--spec``'s processing, with ``--packages``/``--runtime``/``--runtime-config``/``--python`` over
what they declare) and run on the sample by :func:`~airflow_byo.sample_run.run_sample`, the path
every test takes. The two commands differ only in their log and in how they find a warm
environment (the ``byo`` script, without Airflow, passes ``build``: :mod:`.warm_environments`).
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from airflow_byo.cli.preview_text import VERBOSE_HINT, quiet_logging, result_text
from airflow_byo.exceptions import ByoConfigError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from pathlib import Path

    from airflow_byo.flow import ResolvedFlow

__all__ = ["flow_from_arguments", "run_test_command"]


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise ByoConfigError(f"cannot read {what} {path!r}: {exc.strerror}") from None


def flow_from_arguments(args: argparse.Namespace) -> tuple[ResolvedFlow, str | None]:
    """The flow the arguments describe, and the connection to read the sample with."""
    from airflow_byo.flow import ResolvedFlow

    given = [name for name in ("code", "function", "spec") if getattr(args, name)]
    if len(given) != 1:
        raise ByoConfigError("give exactly one of --code FILE, --function NAME[@VERSION] or --spec FILE")
    function_name, packages, runtime = args.function_name, args.packages, args.runtime
    runtime_config, conn_id = args.runtime_config, args.conn_id
    processor: Any
    if args.code:
        processor = _read(args.code, "--code")
    elif args.function:
        from airflow_byo import library

        processor, function_name, packages, runtime = library.resolve(args.function, packages, runtime)
    else:
        from airflow_byo.specs.factory import load_flow

        spec = load_flow(args.spec).spec  # every check of the DAG factory, errors at the spec's lines
        processor, function_name, packages, runtime = spec.processing.resolved(packages, runtime)
        runtime_config = runtime_config or spec.processing.runtime_config
        conn_id = conn_id or spec.source.conn_id
    flow = ResolvedFlow.resolve(
        processor,
        function_name=function_name,
        packages=packages,
        runtime=runtime,
        runtime_config=runtime_config,
        python_interpreter=args.python,
    )
    return flow, conn_id


def _logger(verbose: bool, own_handler: bool) -> logging.Logger:
    """The test's log: silent unless ``-v``; then Airflow's handlers, or stderr (``own_handler``)."""
    log = logging.getLogger("airflow_byo.test")
    if not verbose:
        quiet_logging()
        return log
    if own_handler:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.INFO)
    return log


def run_test_command(
    args: argparse.Namespace, *, build: Callable[[list[str], Path | None], str] | None = None
) -> str | dict[str, Any]:
    """
    Run the test the arguments describe; return what to print: the text (preview, insights,
    result line), or with ``-o json`` the result as a dict.

    :param build: how to get a flow environment (default: build it in the venv cache); also
        selects the ``byo`` script's own stderr log for ``-v``.
    :raises ByoError: a bad argument, sample or environment, or the function's failure (with a
        hint to use ``-v`` unless it is given).
    """
    from airflow_byo.sample_run import run_sample

    log = _logger(args.verbose, own_handler=build is not None)
    flow, conn_id = flow_from_arguments(args)
    sample = run_sample(flow, args.sample, log=log, conn_id=conn_id, build=build)
    sample.raise_for_failure("" if args.verbose else f" {VERBOSE_HINT}")
    return sample.as_dict() if args.output == "json" else result_text(sample.as_dict())
