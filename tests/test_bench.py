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
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == "| figure | measured | same-run baseline | ratio | target |"
    figures = [row.split(" | ")[0].removeprefix("| ") for row in rows[1:]]  # after the header
    assert [f.split()[0] for f in figures] == [
        "B1",
        "B1",
        "B1",
        "B2",
        "B2",
        "B5",
        "B5",
        "B6",
        "B6",
        "L1",
        "L2",
        "S1",
        "S2",
        "S2",
        "T1",
        "T2",
    ]
