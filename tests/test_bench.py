"""The benchmark command still works (a tiny smoke run; no timing is asserted anywhere)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_benchmark_smoke_run_prints_every_figure(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=2100,  # B8 and E each start a LocalExecutor deployment: ~3 min each here, CI is slower
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == "| figure | measured | same-run baseline | ratio | target |"
    figures = [row.split(" | ")[0].removeprefix("| ") for row in rows[1:]]  # after the header
    expected = {"B1": 5, "B2": 2, "B3": 3, "B4": 4, "B5": 2, "B6": 2, "B10a": 1, "B10b": 2}
    expected |= {"L1": 1, "L2": 1, "S1": 1}
    expected |= {"S2": 2, "S3": 3, "T1": 1, "T2": 1, "B8": 12, "E1": 2, "E2": 2}
    assert [f.split()[0] for f in figures] == [name for name, count in expected.items() for _ in range(count)]
    assert all(" | " in row and row.count("|") == 6 for row in rows), rows
