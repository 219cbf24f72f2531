"""
airflow-byo benchmarks: each figure against a baseline measured in the same run.

    python bench/run.py              # full run (a few minutes), writes bench/RESULTS.md
    python bench/run.py --smoke      # tiny sizes, 1 repetition (CI), writes bench/.work/ only
    python bench/run.py --repeat 7   # more repetitions (medians are reported)

(``./dev bench [options]`` does the same after setting up ``.venv``.) Run it with the project's
virtualenv: its ``bin``, put first on ``PATH``, holds the ``uv`` that both sides of B2 use.
Measured and baseline repetitions alternate, so drift on a shared machine hits both alike;
set-up and clean-up (making inputs, deleting outputs) are never timed.

Figures (each module's docstring says exactly what is timed):

* B1 -- 2,000 CSV files of ~4 KB -> JSON Lines through a light function (``csv.DictReader``, one
  dict yielded per row), **through the path users run**: ``airflow tasks test`` of a
  ``ByoFlowOperator`` with one pinned package (warm environment), the default job_config, the
  SQLite ledger and a PostgreSQL one; the in-task time (``execute``) against the same function
  in a plain loop in this process (read, transform, write a temp name, ``os.replace``); target
  <= 1.3x (``bench/task_path.py``). Then ``FlowRunner.run`` alone over 5,000 files (no ledger, no
  Airflow task, this interpreter), three rows: the run minus its fixed start-up against the loop
  (target <= 1.5x); the fixed start-up (a whole one-file run: scratch sweep, runtime staging,
  child start, processor load, child stop); the per-file overhead ``(run - start-up - loop) /
  files`` against the loop's time per file (target <= 0.5x).
* B2 -- a flow environment with 2 small pinned packages (``PACKAGES``). Cold: ``ensure_environment``
  (the standard provider's venv cache layout, built by airflow-byo with uv) into an empty cache
  directory, against raw ``uv venv`` + ``uv pip install`` of the same packages into an empty
  directory (target <= 1.3x). Both share uv's download cache, warmed before timing, so neither
  side downloads. Warm: ``ensure_environment`` when the environment exists (target <= 100 ms).
  Importing Airflow (a few seconds, reported in the notes) happens once before any timing.
* B3 -- one 2 GiB JSON Lines file through a streaming function (operator + ledger) against the
  function on the file in a plain loop (>= 0.9x the throughput); peak RSS of the child (<= 200 MB)
  and of the task process against a tiny file (<= +50 MB), from ``/proc``: ``bench/streaming.py``.
* B4 -- 500 x 1 MB and 5 x 200 MB files, S3 -> SFTP and SFTP -> S3 on the loopback servers, an
  identity function (operator + ledger) against a raw sequential fsspec get + put of the same
  files (<= 1.0x the time): ``bench/transfer.py``.
* B5 -- the sandbox's cost: a child started in bubblewrap (namespaces, binds, the function
  loaded) against the same child unsandboxed (target: at most 50 ms more), and B1's flow over
  2,000 files with the sandbox on against off (target <= 1.1x: the per-file path is the same).
* B6 -- one task on every core (``job_config.workers``), through ``ByoFlowOperator`` and the
  ledger: a CPU-bound function over 300 files against a plain loop (target <= 0.6x on 2 cores),
  and 2,000 light CSV files with ``workers: auto`` against ``workers: 1`` (target <= 1.0x): see
  ``bench/parallel.py``. (B1 and B5 run with the default ``workers: auto`` too.)
* B7 -- scale-out over two Celery workers: ``bench/celery_scale.py``, run by hand (it starts the
  end-to-end tests' CeleryExecutor deployment), not part of this command.
* B8 -- latency from a file landing to its output, on a running LocalExecutor deployment: S3
  event notifications through SQS (``new_files_asset(events=...)``; with Airflow's defaults and
  with a scheduler tuned for latency) beside the polling watcher and the deferrable sensor,
  p50/p95, stages, and a burst of 1,000 files (targets: events p50 <= 2 s, p95 <= 4 s; watcher
  p50 <= 10 s): ``bench/latency.py``, ``bench/latency_events.py``.
* B10a/B10b (group ``I``) -- image runtimes: a child's start on an image vs a venv runtime, and an
  image's first use vs ``skopeo copy`` + ``tar``: ``bench/images.py``.
* W1/W2 (groups ``W1``, ``W2``) -- one run over 100,000 new small files, local and S3: seconds
  per file against the 2,000-file run, the task process's memory growth, the summary XCom's size:
  ``bench/files_scale.py``.
* L1/L2 -- the ledger: see ``bench/ledger_scale.py``.
* L3/L4 (group ``L10M``) -- the ledger with up to 10,000,000 recorded files, SQLite and
  PostgreSQL: discovery among 1,000,000 listed, claim + settle per file: ``bench/ledger_10m.py``.
* S1/S2/S3/S4 -- parsing specs into DAGs, with hostile files, each spec's own file, the parse's
  memory against hand-written DAGs: ``bench/spec_parse.py``.
* T1 -- the CLI test loop, ``byo test`` vs ``airflow byo test``: see ``bench/cli_loop.py``.
* T2 -- the BYO Flows page's Test (its engine, warm) vs ``airflow byo test``: ``bench/cli_loop.py``.
* E1/E2 -- Save -> DAG listed; a spec broken in place -> its import error: ``bench/spec_latency.py``.

W1, W2, L10M and S4 also write their points (cost at every size) to ``bench/scale.json`` (smoke:
``bench/.work/scale-smoke.json``), which ``bench/plot_scale.py`` draws as ``bench/scale.png``.

No benchmark asserts a time: machines are shared and noisy. Read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"  # generated inputs and scratch; gitignored
sys.path.insert(0, str(ROOT))

from bench.csv_files import TRANSFORM, make_csv_files  # noqa: E402 -- after sys.path has the checkout
from bench.timing import Row  # noqa: E402

PACKAGES = ["humanize==4.11.0", "unidecode==1.3.8"]


# -- timing ------------------------------------------------------------------------------------
def _medians(repeat: int, **funcs: Callable[[Path], object]) -> dict[str, float]:
    """:func:`bench.timing.medians` with scratch under ``bench/.work``."""
    from bench.timing import medians

    return medians(repeat, WORK, **funcs)


# -- B1 ----------------------------------------------------------------------------------------
def _transform_in_process(path: Path, out_dir: Path) -> None:
    """B1's baseline for one file: the work of TRANSFORM, written atomically, in this process."""
    with open(path, newline="") as handle:
        records = []
        for row in csv.DictReader(handle):
            row["amount"] = float(row["amount"])
            records.append(json.dumps(row))
    temporary = out_dir / f".tmp-{path.stem}"
    temporary.write_text("\n".join(records) + "\n")
    os.replace(temporary, out_dir / f"{path.stem}.jsonl")


def bench_b5(files: int, repeat: int) -> list[Row]:
    """
    The sandbox's cost: a child started (and the function loaded) with bubblewrap vs without,
    and B1's flow with the sandbox on vs off (same files, same function).
    """
    from airflow_byo.flow import FlowEnvironment, ResolvedFlow
    from airflow_byo.runner import sandbox_mode
    from airflow_byo.runner.flow_runner import FlowRunner
    from airflow_byo.runner.output_handoff import OutputStaging
    from airflow_byo.storage import Location

    if not sandbox_mode.bubblewrap_status()[0]:
        return [("B5 sandbox: bubblewrap cannot work here", 0.0, None, sandbox_mode.bubblewrap_status()[1])]
    source_dir = WORK / f"b1-in-{files}"
    make_csv_files(source_dir, files)
    source = Location(str(source_dir))
    listing = source.list_files()

    def runner(mode: str) -> FlowRunner:
        return FlowRunner(
            flow=ResolvedFlow.resolve(TRANSFORM, runtime_config={}),
            environment=FlowEnvironment(sys.executable),
            log=logging.getLogger("bench.b5"),
            sandbox=mode,  # type: ignore[arg-type]
        )

    on, off = runner("bubblewrap"), runner("off")

    def start(flow: FlowRunner) -> Callable[[Path], None]:
        def child(scratch: Path) -> None:
            staging = OutputStaging(str(scratch))
            with source.input_staging() as inputs, flow.children(inputs=inputs, staging=staging):
                pass  # a child started and its function loaded, then stopped

        return child

    def run(flow: FlowRunner) -> Callable[[Path], None]:
        def over(out: Path) -> None:
            flow.run(source, Location(str(out)), listing)

        return over

    starts = _medians(max(repeat, 5) * 2, sandboxed=start(on), plain=start(off))
    flows = _medians(repeat, sandboxed=run(on), plain=run(off))
    return [
        (
            "B5 child start + function load, sandboxed vs plain (ms)",
            starts["sandboxed"] * 1e3,
            starts["plain"] * 1e3,
            "<= plain + 50 ms",
        ),
        (f"B5 {files:,} files, sandbox on vs off (s)", flows["sandboxed"], flows["plain"], "<= 1.1x"),
    ]


def bench_b1(files: int, repeat: int) -> list[Row]:
    from airflow_byo.flow import FlowEnvironment, ResolvedFlow
    from airflow_byo.runner.flow_runner import FlowRunner
    from airflow_byo.storage import Location

    source_dir = WORK / f"b1-in-{files}"
    make_csv_files(source_dir, files)
    inputs = sorted(source_dir.iterdir())
    source = Location(str(source_dir))
    listing = source.list_files()
    runner = FlowRunner(
        # the defaults a user gets (a fresh child every 1,000 files)
        flow=ResolvedFlow.resolve(TRANSFORM, runtime_config={}),
        environment=FlowEnvironment(sys.executable),
        log=logging.getLogger("bench.b1"),
    )

    def loop(out: Path) -> None:
        for path in inputs:
            _transform_in_process(path, out)

    def flow_over(count: int) -> Callable[[Path], None]:
        def flow(out: Path) -> None:
            summary = runner.run(source, Location(str(out)), listing[:count])
            if summary.as_dict()["files_processed"] != count:
                raise RuntimeError(f"B1: not every file was processed: {summary.as_dict()}")

        return flow

    times = _medians(repeat, loop=loop, flow=flow_over(files), startup=flow_over(1))
    loop_s, startup = times["loop"], times["startup"]
    steady = times["flow"] - startup
    return [
        (
            f"B1 {files:,} CSV -> JSONL, FlowRunner.run only: minus start-up vs loop (s)",
            steady,
            loop_s,
            "<= 1.5x",
        ),
        ("B1 FlowRunner.run only: fixed start-up, a one-file run (s)", startup, None, "reported"),
        (
            "B1 FlowRunner.run only: per-file overhead vs the loop's time per file (ms)",
            (steady - loop_s) / files * 1e3,
            loop_s / files * 1e3,
            "<= 0.5x",
        ),
    ]


def bench_b1_task_path(files: int, repeat: int) -> list[Row]:
    """B1 through ``airflow tasks test`` of a ``ByoFlowOperator``, the ledger on: see bench/task_path.py."""
    from bench import task_path

    source_dir = WORK / f"b1-in-{files}"
    make_csv_files(source_dir, files)
    inputs = sorted(source_dir.iterdir())

    def loop(out: Path) -> None:
        for path in inputs:
            _transform_in_process(path, out)

    return task_path.run(WORK, csv_source=source_dir, transform=TRANSFORM, loop=loop, repeat=repeat)


# -- B2 ----------------------------------------------------------------------------------------
def bench_b2(repeat: int) -> list[Row]:
    from airflow_byo.environment import ensure_environment
    from airflow_byo.packages import parse_packages

    requirements = parse_packages(PACKAGES)
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("B2 needs uv on PATH (pip install uv, or run with the project's .venv)")

    def raw(scratch: Path) -> None:
        venv = scratch / "venv"
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        python = str(venv / "bin" / "python")
        subprocess.run([uv, "pip", "install", "--quiet", "--python", python, *requirements], check=True)

    def cold(scratch: Path) -> None:
        ensure_environment(requirements, scratch)

    warm_cache = Path(tempfile.mkdtemp(dir=WORK))
    try:
        ensure_environment(requirements, warm_cache)  # the warm side's environment
        _medians(1, raw=raw)  # fill uv's download cache for both sides
        times = _medians(repeat, raw=raw, cold=cold)
        warm = _medians(max(repeat, 5), warm=lambda _: ensure_environment(requirements, warm_cache))
    finally:
        shutil.rmtree(warm_cache, ignore_errors=True)
    return [
        ("B2 cold environment, 2 pinned packages (s)", times["cold"], times["raw"], "<= 1.3x"),
        ("B2 warm cache hit (ms)", warm["warm"] * 1e3, None, "<= 100 ms"),
    ]


# -- report ------------------------------------------------------------------------------------
def _machine() -> str:
    from importlib.metadata import version

    uv = subprocess.run(["uv", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}, Airflow {version('apache-airflow')}, "
        f"standard provider {version('apache-airflow-providers-standard')}, {uv}"
    )


def _environment() -> None:
    """Settings for a quiet, self-contained run; must happen before Airflow is imported."""
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("AIRFLOW_HOME", str(WORK / "airflow-home"))
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    # The standard provider reads this Variable when it hashes an environment. Outside a task,
    # with no metadata DB, that lookup logs a database error (and creates an empty airflow.db);
    # answered from the environment, it touches no DB and gives the same hash as an unset one.
    os.environ.setdefault("AIRFLOW_VAR_PYTHON_VIRTUALENV_OPERATOR_CACHE_KEY", "")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repetition; RESULTS.md untouched")
    parser.add_argument("--repeat", type=int, default=0, help="repetitions per figure (default 5, smoke 1)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated figure groups ({', '.join(GROUPS)}); RESULTS.md is then left as it is",
    )
    options = parser.parse_args()
    repeat = options.repeat or (1 if options.smoke else 5)
    only = {name.strip().upper() for name in options.only.split(",") if name.strip()}
    if unknown := only - set(GROUPS):
        parser.error(f"--only: unknown figure group(s) {sorted(unknown)}; known: {', '.join(GROUPS)}")
    WORK.mkdir(exist_ok=True)
    # Every figure removes the scratch folders it makes; bench/.work keeps only reusable inputs.
    # (A sweep of every new tmp* here at the end took a concurrent run's ledger from under it.)
    return _run(options.smoke, repeat, only)


#: The figure groups ``--only`` picks from, in the order a full run measures them.
GROUPS = ("B1", "B2", "B3", "B4", "B5", "B6", "W1", "W2", "I", "L", "L10M", "S", "T", "B8", "E")


def _run(smoke: bool, repeat: int, only: set[str]) -> int:
    _environment()
    logging.basicConfig(level=logging.WARNING)

    started = time.perf_counter()
    import airflow.providers.standard.operators.python  # noqa: F401 - import time is not part of B2

    airflow_import = time.perf_counter() - started

    def wanted(group: str) -> bool:
        return not only or group in only

    rows, points = _figures(smoke, repeat, wanted)
    from bench.timing import table as figures_table

    print(table := figures_table(rows))

    target = WORK / "RESULTS-smoke.md" if smoke else HERE / "RESULTS.md"
    if only:
        target = WORK / f"RESULTS-{'-'.join(sorted(only))}.md"
    command = "python bench/run.py" + (" --smoke" if smoke else "") + f" --repeat {repeat}"
    command += f" --only {','.join(sorted(only))}" if only else ""
    target.write_text(
        f"# Benchmark results\n\n`{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; each figure "
        f"is the median of {repeat} repetitions (L1/L2: at least 3; W1, W2, L10M, S4: at most 3).\n\n"
        f"Machine: {_machine()}.\n\n{table}\n\n"
        f"Not in any figure: importing Airflow and the standard provider took {airflow_import:.1f} s.\n"
    )
    print(f"\nwritten to {target.relative_to(ROOT)}")
    if points:
        _plot(points, smoke=smoke, command=command)
    return 0


def _figures(smoke: bool, repeat: int, wanted: Callable[[str], bool]) -> tuple[list[Row], dict[str, Any]]:
    """The rows of every wanted group, and the scale groups' points (W1, W2, L10M, S4) for the plot."""
    from bench import cli_loop, latency, ledger_scale, parallel, spec_latency, spec_parse, streaming, transfer

    csv_files = 50 if smoke else 2000
    rows: list[Row] = []
    points: dict[str, Any] = {}
    if wanted("B1"):
        rows += bench_b1_task_path(csv_files, repeat)
        rows += bench_b1(200 if smoke else 5000, repeat)
    if wanted("B2"):
        rows += bench_b2(repeat)
    # A 2 GiB stream and hundreds of megabytes per transfer: fewer repetitions than the rest.
    if wanted("B3"):
        rows += streaming.run(WORK, smoke=smoke, repeat=min(repeat, 3))
    if wanted("B4"):
        rows += transfer.run(WORK, smoke=smoke, repeat=min(repeat, 3))
    if wanted("B5"):
        rows += bench_b5(200 if smoke else 2000, repeat)
    if wanted("B6"):
        make_csv_files(WORK / f"b1-in-{csv_files}", csv_files)
        cpu_files = 20 if smoke else 300
        csv_source = WORK / f"b1-in-{csv_files}"
        rows += parallel.run(
            WORK, cpu_files=cpu_files, csv_source=csv_source, transform=TRANSFORM, repeat=repeat
        )
    # The scale groups: minutes per repetition at full size (100,000 files; 10,000,000 recorded).
    for group, place in (("W1", "local"), ("W2", "S3")):  # bench/files_scale.py
        if wanted(group):
            from bench import files_scale

            found, points[group] = files_scale.run(WORK, place=place, smoke=smoke, repeat=min(repeat, 3))
            rows += found
    if wanted("I"):  # B10a/B10b, image runtimes: bench/images.py
        from bench import images

        rows += images.run(WORK, repeat=repeat)
    if wanted("L"):
        recorded = 1000 if smoke else 100_000
        rows += ledger_scale.run(WORK, recorded=recorded, new=100, repeat=max(repeat, 3))
    if wanted("L10M"):  # L3/L4: bench/ledger_10m.py
        from bench import ledger_10m

        found, points["L10M"] = ledger_10m.run(WORK, smoke=smoke, repeat=min(repeat, 3))
        rows += found
    if wanted("S"):
        rows += spec_parse.run(WORK, specs=20 if smoke else 200, repeat=repeat)
        found, points["S4"] = spec_parse.run_memory(WORK, smoke=smoke, repeat=min(repeat, 3))
        rows += found
    if wanted("T"):
        rows += cli_loop.run(WORK, packages=PACKAGES, repeat=repeat)
    for group, deployed in (("B8", latency), ("E", spec_latency)):  # each starts a LocalExecutor deployment
        rows += deployed.run(WORK, smoke=smoke, repeat=repeat) if wanted(group) else []
    return rows, points


def _plot(points: dict[str, Any], *, smoke: bool, command: str) -> None:
    """
    The scale groups' points merged into ``bench/scale.json`` (a group measured now replaces its
    old points; the smoke run's go to ``bench/.work``), drawn by ``bench/plot_scale.py``.
    """
    from bench import plot_scale

    data = WORK / "scale-smoke.json" if smoke else HERE / "scale.json"
    merged = json.loads(data.read_text()) if data.exists() else {}
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    merged.update({group: {"command": command, "when": stamp, **got} for group, got in points.items()})
    data.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    image = WORK / "scale-smoke.png" if smoke else HERE / "scale.png"
    try:
        plot_scale.plot(merged, image)
    except ImportError as error:  # matplotlib: requirements-dev.txt
        print(f"{data.relative_to(ROOT)} written; no plot ({error}): pip install -r requirements-dev.txt")
        return
    print(f"{data.relative_to(ROOT)} written, drawn in {image.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
