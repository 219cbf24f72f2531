"""
T1 -- the command-line test loop: ``byo test --code f.py sample.csv`` against ``airflow byo test``
with the same arguments, both with a warm flow environment (2 pinned packages, built before
timing) and the sandbox as configured. Each side is a whole fresh process, as a user runs it;
repetitions alternate. Target: ``byo test`` under 1.5 s.

T2 -- the BYO Flows page's Test button: the engine its ``POST .../test`` route calls
(:func:`airflow_byo.plugins.testing.run_test`) on the same code, packages and sample, in this one
warm process as the api-server keeps it, against the same ``airflow byo test`` figure. Target:
under 1 s. (The browser test in tests/e2e also times a real click on a running api-server.)
No time is asserted anywhere.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CODE = """
import csv

def process(file, ctx):
    with file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    ctx.insight("rows", len(rows))
    return rows
"""


def run(workdir: Path, *, packages: list[str], repeat: int) -> list[tuple[str, float, float, str]]:
    folder = workdir / "t1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "f.py").write_text(CODE)
    (folder / "sample.csv").write_text("id,name\n" + "".join(f"{i},customer-{i}\n" for i in range(100)))
    bin_dir = Path(sys.executable).parent
    args = [
        "test",
        "--code",
        str(folder / "f.py"),
        "--packages",
        ",".join(packages),
        str(folder / "sample.csv"),
    ]
    commands = {"byo": [str(bin_dir / "byo"), *args], "airflow": [str(bin_dir / "airflow"), "byo", *args]}
    env = os.environ.copy()
    for command in commands.values():  # warm: the environment built, noted, and the caches hot
        subprocess.run(command, check=True, capture_output=True, env=env, timeout=600)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(max(repeat, 3)):
        for name, command in commands.items():
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
            samples[name].append(time.perf_counter() - started)
            if done.returncode != 0 or done.stdout.count("customer-0") != 1:
                raise RuntimeError(f"T1: {name} test failed or its preview is not there once: {done}")
    byo, airflow = (statistics.median(samples[name]) for name in ("byo", "airflow"))
    page = statistics.median(_page_tests(folder, packages, max(repeat, 3)))
    return [
        ("T1 `byo test` warm vs `airflow byo test` warm (s)", byo, airflow, "byo < 1.5 s"),
        ("T2 UI Test (page engine, warm api-server) vs `airflow byo test` warm (s)", page, airflow, "< 1 s"),
    ]


def _page_tests(folder: Path, packages: list[str], repeat: int) -> list[float]:
    """Seconds of each warm Test through the page's engine (the first call warms, untimed)."""
    from airflow_byo.plugins.flows import Flow
    from airflow_byo.plugins.testing import TestRequest, run_test

    flow = Flow("bench_t2", "flow", "operator", {"source": str(folder), "include": ["*.csv"]}, {})
    request = TestRequest(CODE, "process", str(folder / "sample.csv"), packages=",".join(packages))
    deadline = time.monotonic() + 600
    while (result := run_test(flow, request)).get("state") == "building" and time.monotonic() < deadline:
        time.sleep(0.5)
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run_test(flow, request)
        seconds.append(time.perf_counter() - started)
        if not result.get("ok") or "customer-0" not in str(result.get("previews")):
            raise RuntimeError(f"T2: the page's Test failed or has no preview: {result}")
    return seconds
