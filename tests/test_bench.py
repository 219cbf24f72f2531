"""The benchmark command still works (a tiny smoke run; no timing is asserted anywhere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.conftest import ROOT

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow


def _expected_rows() -> list[str]:
    """Each figure's name as often as the smoke run prints it, in order."""
    from bench.ledger_fill import pg_up

    ledger_backends = 2 if pg_up() else 1  # L3/L4's PostgreSQL rows need a server on 127.0.0.1:5432
    expected = [("B1", 5), ("B2", 2), ("B3", 3), ("B4", 4), ("B5", 2), ("B6", 2), ("W1", 3), ("W2", 3)]
    expected += [("B10a", 1), ("B10b", 2), ("L1", 1), ("L2", 1)]
    expected += [("L3", 1), ("L4", 2)] * ledger_backends
    expected += [("S1", 1), ("S2", 2), ("S3", 3), ("S4", 2), ("T1", 1), ("T2", 1), ("B8", 12)]
    expected += [("E1", 2), ("E2", 2)]
    return [name for name, count in expected for _ in range(count)]


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
    assert [f.split()[0] for f in figures] == _expected_rows()
    assert all(" | " in row and row.count("|") == 6 for row in rows), rows
    # the scale groups' points, for the plot: every size of W1, W2, L10M and S4 measured
    points = json.loads((ROOT / "bench" / ".work" / "scale-smoke.json").read_text())
    assert [int(size) for size in points["W1"]["local"]] == points["W1"]["sizes"]
    assert [int(size) for size in points["W2"]["S3"]] == points["W2"]["sizes"]
    assert [int(size) for size in points["L10M"]["backends"]["SQLite"]["claim_settle_ms"]["scattered"]] == (
        points["L10M"]["sizes"]
    )
    assert [int(size) for size in points["S4"]["specs"]] == points["S4"]["sizes"]
    assert (ROOT / "bench" / ".work" / "scale-smoke.png").stat().st_size > 10_000


def test_the_scale_plot_draws_what_was_measured_and_says_what_was_not(tmp_path: Path) -> None:
    """bench/plot_scale.py: a PNG from the points of one group, the others' panels saying so."""
    points = {
        "S4": {
            "sizes": [20, 200],
            "specs": {"20": {"peak_mb": 119.0, "added_mb": 7.0}, "200": {"peak_mb": 124.0, "added_mb": 12.0}},
            "hand": {"20": {"peak_mb": 119.0, "added_mb": 7.0}, "200": {"peak_mb": 120.0, "added_mb": 8.0}},
        }
    }
    data = tmp_path / "scale.json"
    data.write_text(json.dumps(points))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "plot_scale.py"), str(data), str(tmp_path / "scale.png")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "plot_scale.py"), str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert missing.returncode == 1
    assert "no points yet" in missing.stderr
