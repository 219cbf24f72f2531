"""The ``airflow byo`` command group, registered through the provider's ``cli`` entry."""

from __future__ import annotations

from typing import Any

__all__ = ["get_byo_cli_commands"]


def get_byo_cli_commands() -> list[Any]:
    """Commands Airflow adds to its CLI (``airflow byo ...``)."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    flow = Arg(("flow_id",), help="the flow's name in the ledger: <dag_id>.<task_id> unless flow_id= is set")
    conn = Arg(
        ("--ledger-conn-id",), help="ledger database connection (default: [byo] ledger_conn_id / SQLite)"
    )
    verbose = Arg(("-v", "--verbose"), help="show tracebacks", action="store_true")
    output = Arg(("-o", "--output"), help="output format", choices=("table", "json"), default="table")

    def command(name: str, help_text: str, *args: Arg) -> ActionCommand:
        return ActionCommand(
            name=name,
            help=help_text,
            func=lazy_load_command(f"airflow_byo.cli.commands.ledger_{name}"),
            args=(flow, *args, conn, output, verbose),
        )

    ledger = GroupCommand(
        name="ledger",
        help="Inspect and operate a flow's ledger of processed files",
        subcommands=(
            command(
                "status", "Count the flow's files per state, e.g. `airflow byo ledger status my_dag.clean`"
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
    return [
        GroupCommand(
            name="byo", help="airflow-byo: bring-your-own-function data flows", subcommands=(ledger,)
        )
    ]
