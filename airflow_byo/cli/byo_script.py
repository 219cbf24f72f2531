"""
The ``byo`` console script: ``airflow byo`` without Airflow's start-up, for the test loop.

``byo test --code f.py sample.csv`` (or ``--function NAME``) on a local sample runs in this
process without importing Airflow (its import alone takes seconds): ``[byo]`` settings are read
from the environment and ``airflow.cfg`` (:data:`airflow_byo.provider_config.STANDALONE`) and a
warm flow environment is found through :mod:`.warm_environments`. Airflow is imported only when
it is needed: a remote sample (``--conn-id``, a connection), a ``--spec`` file (the DAG factory),
an environment to build, or any other command -- those run as ``airflow byo <command>``, the
same code with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main", "test_parser"]


def test_parser() -> argparse.ArgumentParser:
    """``byo test``'s arguments: those of ``airflow byo test``, from the same definition."""
    from airflow_byo.cli.arguments import TEST_ARGUMENTS, TEST_DESCRIPTION

    parser = argparse.ArgumentParser(prog="byo test", description=TEST_DESCRIPTION)
    for argument in TEST_ARGUMENTS:
        parser.add_argument(*argument.flags, help=argument.help, **argument.options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["test"] or any(a in ("-h", "--help") for a in argv):
        return _airflow(argv)
    args = test_parser().parse_args(argv[1:])
    remote = "://" in args.sample and not args.sample.startswith("file://")
    if args.spec or remote:
        return _airflow(argv)  # a spec needs the DAG factory, a remote sample a connection
    from airflow_byo import provider_config

    provider_config.STANDALONE = True
    from airflow_byo.cli.sample_command import run_test_command
    from airflow_byo.cli.warm_environments import warm_or_build

    try:
        result = run_test_command(args, build=warm_or_build)
        print(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))
    except Exception as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _airflow(argv: list[str]) -> int:
    """Run ``airflow byo <argv>`` in this process (Airflow's CLI parses and dispatches it)."""
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "byo", *argv]
    try:
        airflow_main()
    except SystemExit as exit_:
        return _code(exit_.code)
    return 0


def _code(code: Any) -> int:
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)  # what Python prints for a SystemExit("message")
    return 1
