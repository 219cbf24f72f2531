"""
The arguments of ``airflow byo test``, defined once.

Airflow's CLI (:mod:`.definition`) and the ``byo`` script (:mod:`.byo_script`, which parses them
with argparse without importing Airflow) both build the command from :data:`TEST_ARGUMENTS`, so
the two cannot drift apart. Plain data, standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TEST_ARGUMENTS", "TEST_DESCRIPTION", "Argument"]


@dataclass(frozen=True)
class Argument:
    """One command-line argument: its flags (or positional name), help, and argparse options."""

    flags: tuple[str, ...]
    help: str
    options: dict[str, Any] = field(default_factory=dict)


TEST_DESCRIPTION = (
    "Run a function on one sample file and print the output preview and insights; writes "
    "nothing. Examples: `airflow byo test --code clean.py data/a.csv`, "
    "`airflow byo test --function clean@2 s3://bucket/in/a.csv --conn-id aws_default`, "
    "`airflow byo test --spec flows/orders.yaml data/a.csv`"
)

TEST_ARGUMENTS: tuple[Argument, ...] = (
    Argument(("sample",), "the sample file: a local path, or a URL read with --conn-id"),
    Argument(("--code",), "a Python file holding the function (the inline code of a flow)"),
    Argument(("--function",), "a library function: name or name@version"),
    Argument(("--spec",), "a flow spec file: its function, packages, runtime and runtime config"),
    Argument(("--function-name",), "function to call in --code (default process)"),
    Argument(("--packages",), "PEP 508 requirements, e.g. 'p1==1.0.1,p2==0.0.2'"),
    Argument(("--runtime",), "a named runtime of [byo] runtimes (default: the flow's, else 'default')"),
    Argument(("--runtime-config",), "runtime variables & configuration as JSON"),
    Argument(("--conn-id",), "connection to read a remote sample with (default: a spec's source connection)"),
    Argument(("--python",), "run in this interpreter instead of building the flow's virtualenv"),
    Argument(
        ("-o", "--output"),
        "text (the preview, insights and result line) or json (the run summary with 'preview' and "
        "'flow': the runtime, requirements, job_config and sandbox settings the test ran with)",
        {"choices": ("text", "json"), "default": "text"},
    ),
    Argument(("-v", "--verbose"), "show the log and tracebacks", {"action": "store_true"}),
)
