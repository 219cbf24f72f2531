"""What ``airflow byo ...`` commands do: call the Python functions, print, exit non-zero on errors."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.ledger.schema import FAILED, QUARANTINED
from airflow_byo.ledger.state import Ledger
from airflow_byo.storage.selection import parse_datetime

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


def _ledger(args: argparse.Namespace) -> Ledger:
    return Ledger.of(args.flow_id, args.ledger_conn_id)


@_cli
def ledger_status(args: argparse.Namespace) -> Any:
    """Files per state; and the files held by live claims, per holding run (read only)."""
    from airflow_byo.ledger.holders import held_files
    from airflow_byo.ledger.runs import RunIdentity

    ledger = _ledger(args)
    counts: dict[str, Any] = dict(ledger.counts() or {"files": 0})
    held = held_files(ledger, RunIdentity.current(ledger.flow_id), take_over=False)
    if args.output == "json":
        if held.holders:
            counts["held"] = [h.as_dict() | {"paths": list(h.paths)} for h in held.holders]
        return counts
    lines = [f"{key:<14} {value}" for key, value in counts.items()]
    for holder in held.holders:
        lines.append(f"held by {holder.line()}")
        if holder.dead:
            lines.append(f"  provably dead ({holder.dead}): the next run of the flow takes them over")
        lines += [f"  {path}" for path in holder.paths]
        if holder.files > len(holder.paths):
            lines.append(f"  ... and {holder.files - len(holder.paths)} more")
    return "\n".join(lines)


@_cli
def ledger_history(args: argparse.Namespace) -> list[dict[str, Any]]:
    return _ledger(args).history(args.path)


@_cli
def ledger_quarantined(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = _ledger(args).records([QUARANTINED, FAILED])
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
    count = _ledger(args).forget(reason="reset")
    return f"forgot {count} file(s); the next run processes them again"


@_cli
def ledger_reprocess(args: argparse.Namespace) -> str:
    count = _ledger(args).forget(pattern=args.pattern, reason=f"reprocess {args.pattern}")
    return f"{count} file(s) matching {args.pattern!r} will be processed again by the next run"


@_cli
def ledger_rewind(args: argparse.Namespace) -> str:
    moment = parse_datetime(args.since, "since")
    assert moment is not None  # argparse requires the argument
    count = _ledger(args).forget(since=moment.timestamp(), reason=f"rewind to {moment.isoformat()}")
    return f"{count} file(s) settled since {args.since} will be processed again by the next run"


@_cli
def ledger_replay(args: argparse.Namespace) -> str:
    count = _ledger(args).forget(pattern=args.pattern, states=[QUARANTINED], reason="replay")
    return f"{count} quarantined file(s) will be processed again by the next run"


# -- test, validate, functions ---------------------------------------------------------------------


def _read(path: str, what: str) -> str:
    try:
        return open(path, encoding="utf-8").read()
    except OSError as exc:
        raise ByoConfigError(f"cannot read {what} {path!r}: {exc.strerror}") from None


@_cli
def test(args: argparse.Namespace) -> Any:
    """
    Run a function on one sample file (:mod:`airflow_byo.cli.sample_command`). Prints the
    preview, insights and errors only; Airflow's and the operator's log lines with ``-v``.
    """
    from airflow_byo.cli.sample_command import run_test_command

    return run_test_command(args)


@_cli
def validate(args: argparse.Namespace) -> str:
    """Every check the DAG factory makes (the same code), on spec files or folders."""
    from pathlib import Path

    from airflow_byo.specs.factory import collect_flows
    from airflow_byo.specs.loader import find_specs

    files = [f for p in args.paths for f in (find_specs(p) if Path(p).is_dir() else [Path(p)])]
    if not files:
        raise ByoConfigError(f"no spec files (*.yaml, *.yml, *.json) in {', '.join(args.paths)}")
    collection = collect_flows(files)
    good = [f"ok      {flow.path} ({flow.spec.name})" for flow in collection.flows]
    problems = [f"INVALID {problem}" for problem in collection.problems.values()]
    print("\n".join(good + problems))
    if problems:
        raise ByoConfigError(f"{len(problems)} of {len(files)} spec file(s) invalid")
    return f"{len(files)} spec file(s) valid"


@_cli
def functions_list(args: argparse.Namespace) -> dict[str, Any]:
    from airflow_byo import library

    return {
        name: ", ".join(f"v{v}" for v in versions) for name, versions in library.list_functions().items()
    } or {"(empty library)": str(library.library_path())}


@_cli
def functions_show(args: argparse.Namespace) -> Any:
    from airflow_byo import library

    entry = library.get(args.ref)
    if args.output == "json":
        return dataclasses.asdict(entry)
    created = datetime.fromtimestamp(entry.created_at, UTC).isoformat(timespec="seconds")
    return (
        f"{entry.ref}  function {entry.function_name}  by {entry.created_by} at {created}\n"
        f"packages: {', '.join(entry.packages) or '-'}\n"
        f"description: {entry.description or '-'}\n\n{entry.code}"
    )


@_cli
def functions_save(args: argparse.Namespace) -> str:
    from airflow_byo import library

    entry = library.save(
        args.name,
        _read(args.code, "--code"),
        function_name=args.function_name or "process",
        packages=args.packages,
        description=args.description,
        runtime=args.runtime,
    )
    return f"unchanged, still {entry.ref}" if entry.unchanged else f"saved {entry.ref}"


@_cli
def functions_delete(args: argparse.Namespace) -> str:
    from airflow_byo import library
    from airflow_byo.specs.loader import find_specs, load_spec

    entry = library.get(args.ref)
    latest = library.list_functions()[entry.name][-1]
    used_by = []
    for folder in args.specs:
        for path in find_specs(folder):
            spec = load_spec(path)
            if spec.processing.function and library.uses(spec.processing.function, entry, latest):
                used_by.append(str(path))
    library.delete(entry.ref, used_by=used_by)
    return f"deleted {entry.ref}"


@_cli
def runtimes_list(args: argparse.Namespace) -> Any:
    """The runtimes, and the images cached on this worker."""
    from airflow_byo.images.inventory import list_runtimes

    listing = list_runtimes()
    if getattr(args, "output", "table") == "json":
        return listing
    _print_table([{"cache": listing["cache"]}])
    _print_table(listing["runtimes"])
    return listing["images"] or "(no images cached)"


@_cli
def runtimes_pull(args: argparse.Namespace) -> list[dict[str, Any]]:
    from airflow_byo.images.inventory import pull_images

    return pull_images(list(args.names))


@_cli
def runtimes_prune(args: argparse.Namespace) -> dict[str, Any]:
    from airflow_byo.images.inventory import prune_images

    return prune_images(everything=args.everything)
