"""
airflow-byo benchmarks: each figure against a baseline measured in the same run.

    ./dev bench                 # full run, writes bench/RESULTS.md
    ./dev bench --smoke         # tiny sizes, proves the benchmarks still work (CI); writes nothing
    ./dev bench --repeat 7      # more repetitions (medians are reported)

Figures:

* B1 -- 5,000 CSV files of ~4 KB -> JSON Lines through a light function with ``FlowRunner`` (one
  long-lived child, outputs published atomically) vs. the same function in a plain loop in this
  process (read, transform, write to a temp name, rename). The ratio excludes the fixed start-up
  (child start and processor load), reported on its own. Target <= 1.5x.
* B2 -- a flow environment with 2 small pinned packages: cold build through
  ``ensure_environment`` (the standard provider's ``PythonVirtualenvOperator`` cache, with uv) vs.
  raw ``uv venv`` + ``uv pip install`` of the same packages (target <= 1.3x); and the warm
  cache-hit overhead (target <= 100 ms). Both use the same uv download cache.
* L1/L2 -- the ledger: see ``bench/ledger_scale.py``.
* S1 -- parsing 200 flow specs into DAGs: see ``bench/spec_parse.py``.

No benchmark asserts a time: machines are shared and noisy. Results go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

PACKAGES = ["humanize==4.11.0", "unidecode==1.3.8"]

TRANSFORM = """
import csv

def process(file, ctx):
    with file.open(newline="") as handle:
        for row in csv.DictReader(handle):
            row["amount"] = float(row["amount"])
            yield row
"""


def _transform_in_process(path: Path, out_dir: Path) -> None:
    """B1's baseline: the same work as TRANSFORM, in this process."""
    with open(path, newline="") as handle:
        records = []
        for row in csv.DictReader(handle):
            row["amount"] = float(row["amount"])  # type: ignore[assignment]
            records.append(json.dumps(row))
    target = out_dir / (path.stem + ".jsonl")
    temporary = out_dir / f".tmp-{path.stem}"
    temporary.write_text("\n".join(records) + "\n")
    os.replace(temporary, target)


def _make_csv_files(directory: Path, count: int) -> None:
    if directory.exists() and len(os.listdir(directory)) == count:
        return
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "name", "country", "amount"])
    for index in range(100):  # ~4 KB
        writer.writerow([index, f"customer-{index:04d}", "NL", f"{index * 1.5:.2f}"])
    body = buffer.getvalue()
    for index in range(count):
        (directory / f"orders-{index:05d}.csv").write_text(body)


def bench_b1(workdir: Path, files: int, repeat: int) -> list[tuple[str, float, float, str]]:
    from airflow_byo.config import parse_runtime_config
    from airflow_byo.flow import FlowRunner
    from airflow_byo.processor import resolve_processor
    from airflow_byo.storage import Location

    source = workdir / f"b1-in-{files}"
    _make_csv_files(source, files)
    quiet = logging.getLogger("bench")
    quiet.setLevel(logging.WARNING)

    def loop() -> None:
        out = Path(tempfile.mkdtemp(dir=workdir))
        for path in sorted(source.iterdir()):
            _transform_in_process(path, out)
        shutil.rmtree(out)

    runner = FlowRunner(
        processor=resolve_processor(TRANSFORM),
        config=parse_runtime_config({"job_config": {"batch_size": 100_000}}),
        python=sys.executable,
        log=quiet,
    )
    location = Location(str(source))
    listing = location.list_files()
    startups: list[float] = []

    def flow() -> None:
        out = Path(tempfile.mkdtemp(dir=workdir))
        summary = runner.run(location, Location(str(out)), listing)
        assert summary.as_dict()["files_processed"] == files
        startups.append(_startup_seconds(runner))
        shutil.rmtree(out)

    baseline = statistics.median(_timed(loop) for _ in range(repeat))
    measured = statistics.median(_timed(flow) for _ in range(repeat))
    startup = statistics.median(startups)
    return [
        (f"B1 {files:,} CSV -> JSONL, flow minus start-up (s)", measured - startup, baseline, "<= 1.5x"),
        ("B1 fixed start-up: child start + processor load (s)", startup, 0.0, "reported"),
        (
            "B1 per-file time, flow vs loop (ms)",
            (measured - startup) / files * 1e3,
            baseline / files * 1e3,
            "<= 1.5x",
        ),
    ]


def _startup_seconds(runner: Any) -> float:
    """Time to start a child and load the processor, measured on its own."""
    from airflow_byo.supervisor import ChildProcess, stage_runtime

    runtime = stage_runtime(tempfile.mkdtemp())
    started = time.perf_counter()
    child = ChildProcess(runner.python, runtime, runner._init, logging.getLogger("bench"))
    elapsed = time.perf_counter() - started
    child.stop()
    shutil.rmtree(runtime, ignore_errors=True)
    return elapsed


def _timed(func: Any) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def bench_b2(workdir: Path, repeat: int) -> list[tuple[str, float, float, str]]:
    from airflow_byo.environment import ensure_environment
    from airflow_byo.packages import parse_packages

    requirements = parse_packages(PACKAGES)
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")

    def raw() -> None:
        target = Path(tempfile.mkdtemp(dir=workdir)) / "venv"
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(target)], check=True)
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", str(target / "bin" / "python"), *requirements],
            check=True,
        )
        shutil.rmtree(target.parent)

    def cold() -> None:
        cache = Path(tempfile.mkdtemp(dir=workdir))
        ensure_environment(requirements, cache)
        shutil.rmtree(cache)

    warm_cache = Path(tempfile.mkdtemp(dir=workdir))
    ensure_environment(requirements, warm_cache)
    raw()  # fill uv's download cache for both sides
    baseline = statistics.median(_timed(raw) for _ in range(repeat))
    measured = statistics.median(_timed(cold) for _ in range(repeat))
    warm = statistics.median(
        _timed(lambda: ensure_environment(requirements, warm_cache)) for _ in range(repeat)
    )
    return [
        ("B2 cold environment, 2 pinned packages (s)", measured, baseline, "<= 1.3x"),
        ("B2 warm cache hit (ms)", warm * 1e3, 100.0, "<= 100 ms"),
    ]


def _table(rows: list[tuple[str, float, float, str]]) -> str:
    lines = ["| figure | measured | same-run baseline | ratio | target |", "|---|---:|---:|---:|---|"]
    for name, measured, baseline, target in rows:
        ratio = f"{measured / baseline:.2f}x" if baseline else "-"
        lines.append(f"| {name} | {measured:.4g} | {baseline:.4g} | {ratio} | {target} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; write nothing to RESULTS.md")
    parser.add_argument("--repeat", type=int, default=0, help="repetitions per figure (median)")
    options = parser.parse_args()
    repeat = options.repeat or (1 if options.smoke else 3)
    workdir = HERE / ".work"
    workdir.mkdir(exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(workdir / "airflow-home"))
    # The standard provider reads this Variable when it hashes an environment; with no metadata
    # DB here, answer from the environment instead of logging a database error.
    os.environ.setdefault("AIRFLOW_VAR_PYTHON_VIRTUALENV_OPERATOR_CACHE_KEY", "")
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("airflow", "airflow.task", "airflow.providers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from bench import ledger_scale, spec_parse

    rows = bench_b1(workdir, 200 if options.smoke else 5000, repeat)
    with contextlib.redirect_stdout(io.StringIO()):
        rows += bench_b2(workdir, repeat)
    rows += ledger_scale.run(
        workdir, recorded=1000 if options.smoke else 100_000, new=100, repeat=max(repeat, 3)
    )
    rows += spec_parse.run(workdir, specs=20 if options.smoke else 200, repeat=repeat)
    table = _table(rows)
    print(table)
    if not options.smoke:
        machine = f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs"
        (HERE / "RESULTS.md").write_text(
            f"# Benchmark results\n\n`./dev bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}; "
            f"medians of {repeat} repetitions.\n\n{table}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
