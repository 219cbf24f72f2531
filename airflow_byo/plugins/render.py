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


def chart(runs: list[dict[str, Any]]) -> Markup:
    """Files processed (green) and failed or quarantined (red) per run, oldest left."""
    runs = list(reversed(runs))[-30:]
    if not runs:
        return Markup('<p class="muted">No runs yet.</p>')
    top = max(
        [
            (r.get("files_processed") or 0) + (r.get("files_failed") or 0) + (r.get("files_quarantined") or 0)
            for r in runs
        ]
        + [1]
    )
    width, height, bar = 24 * len(runs) + 10, 90, 16
    parts = []
    for i, run in enumerate(runs):
        good = run.get("files_processed") or 0
        bad = (run.get("files_failed") or 0) + (run.get("files_quarantined") or 0)
        x = 5 + 24 * i
        good_h, bad_h = 70 * good / top, 70 * bad / top
        title = escape(f"{run['run_id']}: {good} processed, {bad} failed/quarantined ({run['state']})")
        parts.append(
            f"<g><title>{title}</title>"
            f'<rect x="{x}" y="{75 - good_h:.1f}" width="{bar}" height="{good_h:.1f}" class="bar-ok"/>'
            f'<rect x="{x}" y="{75 - good_h - bad_h:.1f}" width="{bar}" height="{bad_h:.1f}" '
            'class="bar-bad"/>'
            f'<rect x="{x}" y="80" width="{bar}" height="6" class="state-{escape(run["state"])}"/></g>'
        )
    svg = f'<svg class="chart" role="img" aria-label="files per run" width="{width}" height="{height}">'
    return Markup(svg + "".join(parts) + "</svg>")
