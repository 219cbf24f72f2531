"""
How every benchmark times its sides (alternating repetitions, set-up never on the clock) and
prints its figures.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Row", "medians", "table"]

#: figure, measured, same-run baseline (None: nothing to compare with), target
Row = tuple[str, float, float | None, str]


def medians(repeat: int, workdir: Path, **funcs: Callable[[Path], object]) -> dict[str, float]:
    """
    Median seconds of each ``func(scratch_dir)``; repetitions alternate between the funcs.
    Each call gets a fresh empty directory under ``workdir``, created before and deleted after
    the clock runs. A func that times itself (the part that counts runs in another process)
    returns its own seconds, which are taken instead of the wall time around the call.
    """
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeat):
        for name, func in funcs.items():
            scratch = Path(tempfile.mkdtemp(dir=workdir))
            try:
                started = time.perf_counter()
                measured = func(scratch)
                wall = time.perf_counter() - started
                samples[name].append(measured if isinstance(measured, float) else wall)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    return {name: statistics.median(values) for name, values in samples.items()}


def table(rows: list[Row]) -> str:
    """The figures as a Markdown table: measured, baseline, their ratio, the target."""
    lines = ["| figure | measured | same-run baseline | ratio | target |", "|---|---:|---:|---:|---|"]
    for name, measured, baseline, target in rows:
        compared = f"{baseline:.4g} | {measured / baseline:.2f}x" if baseline else "- | -"
        lines.append(f"| {name} | {measured:.4g} | {compared} | {target} |")
    return "\n".join(lines)
