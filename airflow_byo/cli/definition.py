"""The ``airflow byo`` command group, registered through the provider's ``cli`` entry."""

from __future__ import annotations

from typing import Any

__all__ = ["get_byo_cli_commands"]


def get_byo_cli_commands() -> list[Any]:
    """Commands Airflow adds to its CLI (``airflow byo ...``)."""
    from airflow.cli.cli_config import Arg, GroupCommand

    from airflow_byo.cli.arguments import TEST_ARGUMENTS

    verbose = Arg(("-v", "--verbose"), help="show tracebacks", action="store_true")
    output = Arg(("-o", "--output"), help="output format", choices=("table", "json"), default="table")
    # `functions save` takes these as `test` does.
    shared = {argument.flags[0]: argument for argument in TEST_ARGUMENTS}
    function_name, packages, runtime = (
        Arg(shared[flag].flags, help=shared[flag].help)
        for flag in ("--function-name", "--packages", "--runtime")
    )
    return [
        GroupCommand(
            name="byo",
            help="airflow-byo: bring-your-own-function data flows",
            subcommands=(
                *_test_and_validate(verbose),
                _functions(verbose, output, function_name, packages, runtime),
                _ledger(verbose, output),
                _runtimes(verbose, output),
            ),
        )
    ]


def _action(name: str, help_text: str, *args: Any, func: str | None = None) -> Any:
    """A command whose function is ``airflow_byo.cli.commands.<func or name>`` (imported when run)."""
    from airflow.cli.cli_config import ActionCommand, lazy_load_command

    return ActionCommand(
        name=name,
        help=help_text,
        func=lazy_load_command(f"airflow_byo.cli.commands.{func or name}"),
        args=args,
    )


def _ledger(verbose: Any, output: Any) -> Any:
    from airflow.cli.cli_config import Arg, GroupCommand

    flow = Arg(("flow_id",), help="the flow's name in the ledger: <dag_id>.<task_id> unless flow_id= is set")
    conn = Arg(
        ("--ledger-conn-id",), help="ledger database connection (default: [byo] ledger_conn_id / SQLite)"
    )

    def command(name: str, help_text: str, *args: Arg) -> Any:
        return _action(name, help_text, flow, *args, conn, output, verbose, func=f"ledger_{name}")

    return GroupCommand(
        name="ledger",
        help="Inspect and operate a flow's ledger of processed files",
        subcommands=(
            command(
                "status",
                "Count the flow's files per state and show the files other runs hold, by which run "
                "(host, pid, dag, run, task) and until when, e.g. `airflow byo ledger status my_dag.clean`",
            ),
            command("history", "Show one file's history", Arg(("path",), help="path relative to the source")),
            command("quarantined", "List quarantined and failed files with their errors"),
            command("reset", "Forget every file: the next run processes the whole source again"),
            command(
                "reprocess",
                "Process files again, e.g. `airflow byo ledger reprocess my_dag.clean '2024/*.csv'`",
                Arg(("pattern",), help="glob on the path relative to the source"),
            ),
            command(
                "rewind",
                "Process again every file settled since a time, e.g. "
                "`airflow byo ledger rewind my_dag.clean 2024-05-01T00:00`",
                Arg(("since",), help="ISO date/time (UTC when no offset is given)"),
            ),
            command(
                "replay",
                "After a fix, process the quarantined files again",
                Arg(("--pattern",), help="only quarantined files matching this glob"),
            ),
        ),
    )


def _test_and_validate(verbose: Any) -> tuple[Any, Any]:
    from airflow.cli.cli_config import Arg

    from airflow_byo.cli.arguments import TEST_ARGUMENTS, TEST_DESCRIPTION

    test = _action(
        "test",
        TEST_DESCRIPTION,
        *(Arg(argument.flags, help=argument.help, **argument.options) for argument in TEST_ARGUMENTS),
    )
    validate = _action(
        "validate",
        "Check flow spec files (or folders of them) and report every problem with file, line and "
        "field, e.g. `airflow byo validate dags/flows`",
        Arg(("paths",), nargs="+", help="spec files or folders"),
        verbose,
    )
    return test, validate


def _functions(verbose: Any, output: Any, function_name: Any, packages: Any, runtime: Any) -> Any:
    from airflow.cli.cli_config import Arg, GroupCommand

    return GroupCommand(
        name="functions",
        help="The reusable function library ([byo] function_library)",
        subcommands=(
            _action(
                "list", "List library functions and their versions", output, verbose, func="functions_list"
            ),
            _action(
                "show",
                "Show a function's code, packages, author and date, e.g. `... show clean@2`",
                Arg(("ref",), help="name or name@version"),
                output,
                verbose,
                func="functions_show",
            ),
            _action(
                "save",
                "Validate and save a function as the next version, e.g. "
                "`airflow byo functions save clean --code clean.py --packages 'unidecode==1.3.8'`",
                Arg(("name",), help="the function's library name"),
                Arg(("--code",), help="the Python file holding the function", required=True),
                function_name,
                packages,
                runtime,
                Arg(("--description",), help="what the function does", default=""),
                verbose,
                func="functions_save",
            ),
            _action(
                "delete",
                "Delete one version not used by any flow spec, e.g. `... delete clean@1 --specs dags/flows`",
                Arg(("ref",), help="name@version"),
                Arg(
                    ("--specs",),
                    help="folder of flow specs that must not use it",
                    action="append",
                    default=[],
                ),
                verbose,
                func="functions_delete",
            ),
        ),
    )


def _runtimes(verbose: Any, output: Any) -> Any:
    from airflow.cli.cli_config import Arg, GroupCommand

    return GroupCommand(
        name="runtimes",
        help="The named runtimes ([byo] runtimes) and the images this worker caches for them",
        subcommands=(
            _action(
                "list",
                "List the runtimes and the cached images: size per digest, runtimes and flows using it",
                output,
                verbose,
                func="runtimes_list",
            ),
            _action(
                "pull",
                "Fetch and unpack image runtimes (and their base packages) ahead of the first run, "
                "e.g. `airflow byo runtimes pull gis`",
                Arg(("names",), nargs="*", help="image runtimes (default: all of them)"),
                output,
                verbose,
                func="runtimes_pull",
            ),
            _action(
                "prune",
                "Remove cached images no runtime pins (with --all: every one not in use)",
                Arg(("--all",), help="remove pinned images too", action="store_true", dest="everything"),
                output,
                verbose,
                func="runtimes_prune",
            ),
        ),
    )
