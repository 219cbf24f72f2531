"""HTML for the page: Jinja2 templates (autoescaped), highlighted code, a small SVG chart."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

__all__ = ["page"]

_TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
    )
    env.filters["highlight"] = highlight
    env.filters["as_json"] = lambda v: json.dumps(v, indent=2, default=str) if v not in (None, "") else ""
    env.filters["when"] = when
    env.filters["value"] = value_text
    env.filters["packages"] = packages_text
    env.globals["chart"] = chart
    env.globals["highlight_css"] = highlight_css
    return env


def page(template: str, **context: Any) -> str:
    return str(_environment().get_template(template).render(**context))


def when(value: Any) -> str:
    if value in (None, ""):
        return "-"
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value).replace("T", " ")[:19]


def value_text(value: Any, limit: int = 500) -> str:
    """An insight's value as one line: JSON for lists and objects, cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def packages_text(value: Any) -> str:
    if not value:
        return ""
    return ", ".join(value) if isinstance(value, list | tuple) else str(value)


@functools.cache
def highlight_css() -> Markup:
    try:
        from pygments.formatters import HtmlFormatter
    except ImportError:
        return Markup("")
    return Markup(HtmlFormatter(style="default").get_style_defs(".hl"))


def highlight(code: str | None) -> Markup:
    """Python code as HTML with line numbers (Pygments when installed, else plain and escaped)."""
    if not code:
        return Markup("")
    try:
        from pygments import highlight as pyg_highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:
        lines = "".join(
            f'<span class="ln">{i}</span>{escape(line)}\n' for i, line in enumerate(code.splitlines(), 1)
        )
        return Markup(f'<div class="hl"><pre>{lines}</pre></div>')
    return Markup(pyg_highlight(code, PythonLexer(), HtmlFormatter(cssclass="hl", linenos="inline")))


_BAR, _STEP, _LEFT, _TOP, _PLOT = 16, 24, 44, 12, 100  # bar width, bar pitch, margins, plot height


def chart(runs: list[dict[str, Any]]) -> Markup:
    """
    Files processed (green) and failed or quarantined (red) per run, oldest left, with the run's
    state as a strip under each bar; a y axis of files, the first and last runs' dates on the x
    axis, and a legend.
    """
    runs = list(reversed(runs))[-30:]
    if not runs:
        return Markup('<p class="muted">No runs yet.</p>')
    top = max([_good(run) + _bad(run) for run in runs] + [1])
    width = max(_LEFT + _STEP * len(runs) + 10, 420)
    height = _TOP + _PLOT + 72
    parts = [*_axes(runs, top, width), *(_bar(i, run, top) for i, run in enumerate(runs)), *_legend()]
    svg = (
        f'<svg class="chart" role="img" aria-label="files per run: processed and failed, oldest run left" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    )
    return Markup(svg + "".join(parts) + "</svg>")


def _good(run: dict[str, Any]) -> int:
    return int(run.get("files_processed") or 0)


def _bad(run: dict[str, Any]) -> int:
    return int(run.get("files_failed") or 0) + int(run.get("files_quarantined") or 0)


def _axes(runs: list[dict[str, Any]], top: int, width: int) -> list[str]:
    """The y axis (files: 0, half, top, with grid lines), the x axis with its first and last dates."""
    base, middle = _TOP + _PLOT, _TOP + _PLOT / 2
    ticks = sorted({0, top // 2, top}) if top > 1 else [0, 1]
    parts = [
        f'<line class="axis" x1="{_LEFT - 4}" y1="{base}" x2="{width - 4}" y2="{base}"/>',
        f'<line class="axis" x1="{_LEFT - 4}" y1="{_TOP}" x2="{_LEFT - 4}" y2="{base}"/>',
        f'<text class="axis-title" x="10" y="{middle}" transform="rotate(-90 10 {middle})" '
        'text-anchor="middle">files</text>',
    ]
    for tick in ticks:
        y = base - _PLOT * tick / top
        parts.append(f'<line class="grid" x1="{_LEFT - 4}" y1="{y:.1f}" x2="{width - 4}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    label_y = base + 26
    first, last = runs[0], runs[-1]
    parts.append(f'<text class="tick" x="{_LEFT}" y="{label_y}">{escape(_date(first))}</text>')
    if len(runs) > 1:
        x = _LEFT + _STEP * (len(runs) - 1) + _BAR
        parts.append(
            f'<text class="tick" x="{x}" y="{label_y}" text-anchor="end">{escape(_date(last))}</text>'
        )
    parts.append(
        f'<text class="axis-title" x="{(_LEFT + width) / 2}" y="{label_y + 16}" text-anchor="middle">'
        f"runs, oldest left ({len(runs)})</text>"
    )
    return parts


def _date(run: dict[str, Any]) -> str:
    return when(run.get("end_date") or run.get("run_after"))[5:16]


def _bar(index: int, run: dict[str, Any], top: int) -> str:
    good, bad = _good(run), _bad(run)
    base = _TOP + _PLOT
    x = _LEFT + _STEP * index
    good_h, bad_h = _PLOT * good / top, _PLOT * bad / top
    title = escape(f"{run['run_id']}: {good} processed, {bad} failed/quarantined ({run['state']})")
    return (
        f"<g><title>{title}</title>"
        f'<rect x="{x}" y="{base - good_h:.1f}" width="{_BAR}" height="{good_h:.1f}" class="bar-ok"/>'
        f'<rect x="{x}" y="{base - good_h - bad_h:.1f}" width="{_BAR}" height="{bad_h:.1f}" class="bar-bad"/>'
        f'<rect x="{x}" y="{base + 4}" width="{_BAR}" height="6" class="state-{escape(run["state"])}"/></g>'
    )


def _legend() -> list[str]:
    y = _TOP + _PLOT + 60
    items = (
        ("bar-ok", "files processed"),
        ("bar-bad", "failed or quarantined"),
        ("state-success", "run state"),
    )
    parts, x = [], _LEFT
    for css, label in items:
        parts.append(f'<rect class="{css}" x="{x}" y="{y - 9}" width="10" height="10"/>')
        parts.append(f'<text class="legend" x="{x + 14}" y="{y}">{label}</text>')
        x += 30 + 7 * len(label)
    return parts
