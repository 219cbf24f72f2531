"""What ``airflow byo ...`` commands do: call the Python functions, print, exit non-zero on errors."""

from __future__ import annotations

import functools
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_byo.ledger import operations

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable


def _cli(func: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], None]:
    """Print the result; errors become one line plus the hint (tracebacks with --verbose)."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> None:
        try:
            result = func(args)
        except Exception as exc:
            if getattr(args, "verbose", False):
                raise
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        if getattr(args, "output", "table") == "json":
            print(json.dumps(result, indent=2, default=str))
        else:
            _print_table(result)

    return wrapper


def _when(value: Any) -> Any:
    return (
        datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
        if isinstance(value, float)
        else value
    )


def _print_table(result: Any) -> None:
    if isinstance(result, dict):
        for key, value in result.items():
            print(f"{key:<14} {value}")
    elif isinstance(result, list):
        for row in result:
            print("  ".join(f"{k}={_when(v)}" for k, v in row.items() if v is not None))
        if not result:
            print("(nothing)")
    else:
        print(result)


@_cli
def ledger_status(args: argparse.Namespace) -> dict[str, int]:
    return operations.status(args.flow_id, args.ledger_conn_id) or {"files": 0}


@_cli
def ledger_history(args: argparse.Namespace) -> list[dict[str, Any]]:
    return operations.history(args.flow_id, args.path, args.ledger_conn_id)


@_cli
def ledger_quarantined(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = operations.quarantined(args.flow_id, args.ledger_conn_id)
    return [
        {
            "path": r["path"],
            "state": r["state"],
            "attempts": r["attempts"],
            "updated": r["updated"],
            "error": (r["error"] or "")[:200],
        }
        for r in rows
    ]


@_cli
def ledger_reset(args: argparse.Namespace) -> str:
    count = operations.reset(args.flow_id, args.ledger_conn_id)
    return f"forgot {count} file(s); the next run processes them again"


@_cli
def ledger_reprocess(args: argparse.Namespace) -> str:
    count = operations.reprocess(args.flow_id, args.pattern, args.ledger_conn_id)
    return f"{count} file(s) matching {args.pattern!r} will be processed again by the next run"


@_cli
def ledger_rewind(args: argparse.Namespace) -> str:
    count = operations.rewind(args.flow_id, args.since, args.ledger_conn_id)
    return f"{count} file(s) settled since {args.since} will be processed again by the next run"


@_cli
def ledger_replay(args: argparse.Namespace) -> str:
    count = operations.replay(args.flow_id, args.pattern, args.ledger_conn_id)
    return f"{count} quarantined file(s) will be processed again by the next run"
