"""
The scale figures as one picture: cost against work on log-log axes (issue 24, item 3).

    python bench/plot_scale.py                      # bench/scale.json -> bench/scale.png
    python bench/plot_scale.py DATA.json OUT.png

``bench/run.py`` writes the points of the groups W1, W2, L10M (L3/L4) and S (S4) to
``bench/scale.json`` when it measures them and calls :func:`plot`; this script draws the file
again by hand. Six panels: a run's seconds per file, its task process's memory growth and its
summary XCom's size against the files in the run; discovery's seconds and claim + settle per file
against the files recorded in the ledger; the parse's peak memory against the number of specs.
Each goal is drawn dotted beside the points it bounds. A group not measured yet leaves its
panels empty, saying so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["plot"]

HERE = Path(__file__).resolve().parent


def _series(points: dict[str, Any]) -> tuple[list[int], list[float]]:
    """A ``{size: value}`` mapping (keys are strings after JSON) as sorted x and y lists."""
    by_size = {int(size): value for size, value in points.items()}
    sizes = sorted(by_size)
    return sizes, [by_size[size] for size in sizes]


def _axes(axis: Any, title: str, xlabel: str, ylabel: str) -> None:
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_title(title, fontsize=9)
    axis.set_xlabel(xlabel, fontsize=8)
    axis.set_ylabel(ylabel, fontsize=8)
    axis.tick_params(labelsize=7)
    axis.grid(True, which="both", linewidth=0.3, alpha=0.5)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for scale in (axis.xaxis, axis.yaxis):  # 2,000 rather than 2x10^3; 1-2-5 steps
        scale.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        scale.set_major_formatter(FuncFormatter(_number))
        scale.set_minor_formatter(NullFormatter())


def _number(value: float, _position: Any = None) -> str:
    """A tick label: 2,000 and 10,000,000 rather than 2x10^3 and 1e+07."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _widen(axis: Any, decades: float = 1.0) -> None:
    """
    At least ``decades`` decades on the y axis, centred on the points: a flat line must look
    flat, not stretched across a 2 % range by autoscaling.
    """
    from matplotlib.ticker import LogLocator

    low, high = axis.get_ylim()
    if low > 0 and high / low < 10**decades:
        stretch = (10**decades / (high / low)) ** 0.5
        axis.set_ylim(low / stretch, high * stretch)
    left, right = axis.get_xlim()
    if left > 0 and right / left > 300:  # many decades: a label per decade, or they overlap
        axis.xaxis.set_major_locator(LogLocator(base=10))


def _empty(axis: Any, group: str) -> None:
    axis.text(0.5, 0.5, f"group {group} not measured yet", ha="center", va="center", transform=axis.transAxes)


def _goal(axis: Any, value: float, color: str, label: str | None = None, style: str = ":") -> None:
    """A level across the panel: a goal (dotted) or a baseline (dashed)."""
    axis.axhline(value, linestyle=style, color=color, linewidth=1, label=label)


def _files(axes: list[Any], data: dict[str, Any]) -> None:
    """W1/W2: per file, memory growth, XCom size against the files in the run."""
    titles = (
        ("W1/W2 time per file (goal: <= 1.2x the smallest run)", "ms per file"),
        ("W1/W2 task process memory growth (goal: <= 100 MB)", "MB"),
        ("W1/W2 summary XCom size (goal: bounded)", "bytes"),
    )
    measured = [(group, data[group]) for group in ("W1", "W2") if data.get(group)]
    for axis, (title, ylabel) in zip(axes, titles, strict=True):
        _axes(axis, title, "new files in the run", ylabel)
        if not measured:
            _empty(axis, "W1/W2")
    for group, got in measured:
        place = "local" if group == "W1" else "S3"
        color = "tab:blue" if group == "W1" else "tab:orange"
        for axis, key in zip(axes, ("ms_per_file", "growth_mb", "xcom_bytes"), strict=True):
            sizes, values = _series({size: figures[key] for size, figures in got[place].items()})
            shown = [max(v, 0.01) for v in values]  # a log axis: no zero
            axis.plot(sizes, shown, marker="o", color=color, label=f"{group} {place}")
            if key == "ms_per_file":
                _goal(axis, values[0] * 1.2, color)
            elif key == "growth_mb":
                _goal(axis, 100.0, "tab:red", "goal" if group == measured[0][0] else None)
    if measured:
        for axis in axes:
            axis.legend(fontsize=7)


def _ledger(discovery: Any, claims: Any, data: dict[str, Any] | None) -> None:
    """L3 (list + find against the listing alone) and L4 (claim + settle per file) against recorded files."""
    listed = f"{data['listed']:,}" if data else "1,000,000"
    _axes(
        discovery, f"L3 find 100 new among {listed} listed (goal: <= 1.5x the listing)", "files recorded", "s"
    )
    title = "L4 claim + settle per new file (goal: <= 1.2x the smallest ledger)"
    _axes(claims, title, "files recorded", "ms")
    if not data:
        _empty(discovery, "L10M")
        _empty(claims, "L10M")
        return
    colors = {"SQLite": "tab:green", "PostgreSQL": "tab:purple"}
    for backend, got in data["backends"].items():
        if not got:
            continue
        color = colors.get(backend, "tab:gray")
        sizes, seconds = _series(got["discovery"])
        discovery.plot(sizes, seconds, marker="o", color=color, label=f"{backend}: list + find")
        _goal(discovery, got["listing"], color, f"{backend}: the listing alone", style="--")
        _goal(discovery, got["listing"] * 1.5, color)
        for layout, marker in (("together", "o"), ("scattered", "s")):
            sizes, per_file = _series(got["claim_settle_ms"][layout])
            claims.plot(sizes, per_file, marker=marker, color=color, label=f"{backend}, {layout}")
            if layout == "together":
                _goal(claims, per_file[0] * 1.2, color)
    discovery.legend(fontsize=7)
    claims.legend(fontsize=7)


def _parse(axis: Any, data: dict[str, Any] | None) -> None:
    """S4: the parse's peak RSS (whole process) against the number of specs, and the hand-written DAGs'."""
    _axes(axis, "S4 parse peak RSS, whole process (goal: <= 1.2x hand-written)", "specs (DAGs)", "MB")
    if not data:
        _empty(axis, "S")
        return
    for side, color, label in (
        ("specs", "tab:blue", "flow specs"),
        ("hand", "tab:gray", "hand-written DAGs"),
    ):
        sizes, peaks = _series({size: got["peak_mb"] for size, got in data[side].items()})
        axis.plot(sizes, peaks, marker="o", color=color, label=f"{label}: peak")
        sizes, added = _series({size: got["added_mb"] for size, got in data[side].items()})
        axis.plot(
            sizes,
            [max(a, 0.1) for a in added],
            marker="s",
            linestyle="--",
            color=color,
            label=f"{label}: added over import airflow.sdk",
        )
    axis.legend(fontsize=7)


def plot(data: dict[str, Any], image: Path) -> None:
    """Draw the groups' points (``bench/scale.json``'s content) into ``image`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display
    from matplotlib import pyplot

    figure, grid = pyplot.subplots(2, 3, figsize=(16, 9))
    _files(list(grid[0]), data)
    _ledger(grid[1][0], grid[1][1], data.get("L10M"))
    _parse(grid[1][2], data.get("S4"))
    stamps = "; ".join(f"{group}: {got.get('when', '?')}" for group, got in sorted(data.items()))
    for axis in grid.flat:
        _widen(axis)
    figure.suptitle(f"airflow-byo: cost against work (issue 24), medians. Measured {stamps}", fontsize=10)
    figure.tight_layout()
    figure.savefig(image, dpi=100)
    pyplot.close(figure)


def main(argv: list[str]) -> int:
    data = Path(argv[0]) if argv else HERE / "scale.json"
    image = Path(argv[1]) if len(argv) > 1 else data.with_suffix(".png")
    if not data.exists():
        print(f"{data}: no points yet; run python bench/run.py --only W1,W2,L10M,S first", file=sys.stderr)
        return 1
    plot(json.loads(data.read_text()), image)
    print(f"written to {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
