"""Read flow spec files (YAML or JSON) into :class:`FlowSpec`, with errors that name file, line and field."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from airflow_byo.exceptions import ByoFlowSpecError
from airflow_byo.specs.model import FlowSpec

__all__ = ["SPEC_SUFFIXES", "find_specs", "load_spec"]

SPEC_SUFFIXES = (".yaml", ".yml", ".json")

#: libyaml's loader when PyYAML has it (several times faster: specs are parsed on every DAG parse).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def find_specs(folder: str | Path) -> list[Path]:
    """The spec files of a folder (recursively), sorted."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in SPEC_SUFFIXES and p.is_file())


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the value at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:  # a missing field: point at its parent
                return line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _fix_for(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        field = str(error["loc"][-1])
        model = FlowSpec
        for part in error["loc"][:-1]:
            annotation = model.model_fields.get(str(part))
            inner = getattr(annotation, "annotation", None) if annotation else None
            model = next(
                (a for a in getattr(inner, "__args__", (inner,)) if hasattr(a, "model_fields")), None
            )  # type: ignore[assignment]
            if model is None:
                return "remove it"
        close = difflib.get_close_matches(field, list(model.model_fields), n=1)
        return f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(model.model_fields)}"
    if error["type"] == "missing":
        return "add it"
    return ""


def load_spec(path: str | Path) -> FlowSpec:
    """
    Parse and validate one spec file.

    :raises ByoConfigError: ``<file>:<line>: <field.path>: <problem>. <fix>`` for every problem.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ByoFlowSpecError(f"{path}{where}: not valid YAML/JSON: {problem}") from None
    if not isinstance(data, dict):
        raise ByoFlowSpecError(
            f"{path}:1: a flow spec is a mapping with name, source, processing, destination"
        )
    try:
        return FlowSpec.model_validate(data)
    except ValidationError as exc:
        node = yaml.compose(text, Loader=_LOADER)  # only now: line numbers for the messages
        lines = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            line = _line_of(node, loc)
            field = ".".join(str(part) for part in loc) or "(spec)"
            message = error["msg"].removeprefix("Value error, ")
            fix = _fix_for(error)
            lines.append(f"{path}:{line}: {field}: {message}" + (f". Fix: {fix}" if fix else ""))
        raise ByoFlowSpecError("\n".join(lines)) from None
