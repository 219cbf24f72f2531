"""
A spec from the page as the YAML it will be saved as, checked exactly as ``airflow byo validate``
checks a file.

:func:`dump_spec` writes the form's spec with a safe dumper (plain YAML only), in a stable field
order that follows the form, multi-line code as a ``|`` block, long strings never folded, and
fields left empty (``null`` where the model's default is null) dropped. :func:`check_text` puts
those bytes in a file of a private temporary folder and runs the factory's own
:func:`~airflow_byo.specs.factory.load_flow` on it (the bounded loader, the model, the processor
and path checks, the DAG build), after the page's own limits
(:mod:`~airflow_byo.plugins.editor.page_rules`): every error is ``{field, message, line}``, the
line counted in the YAML the page saves.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from airflow_byo.plugins.editor.page_rules import page_problems
from airflow_byo.specs import model

__all__ = ["FieldError", "check_text", "dump_spec", "load_text"]

#: The form's order; fields not named here follow in the model's order, unknown ones last.
_ORDER: dict[str, tuple[str, ...]] = {
    "": ("name", "description", "source", "schedule", "watch", "sensor", "processing", "destination"),
    "source": ("type", "conn_id", "path", "include", "exclude", "recursive", "min_size", "max_size"),
    "destination": ("type", "conn_id", "path"),
    "processing": ("code", "function", "reference", "function_name", "packages", "runtime", "runtime_config"),
}
_MODELS: dict[str, type[Any]] = {
    "": model.FlowSpec,
    "source": model.SourceSpec,
    "destination": model.DestinationSpec,
    "processing": model.ProcessingSpec,
    "sensor": model.SensorSpec,
    "watch": model.WatchSpec,
    "notifications": model.NotificationsSpec,
}


@dataclass(frozen=True)
class FieldError:
    """One problem of a spec, at its field (``source.path``) and line of the saved YAML."""

    field: str
    message: str
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Dumper(yaml.SafeDumper):
    """The safe dumper, with multi-line strings as ``|`` blocks (readable code in git diffs)."""


_Dumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    ),
)


def _ordered(data: dict[str, Any], key: str = "") -> dict[str, Any]:
    """``data`` in the form's order, empty optional fields dropped (nested blocks too)."""
    fields = getattr(_MODELS.get(key), "model_fields", {})
    order = [*_ORDER.get(key, ()), *fields]
    keys = sorted(data, key=lambda k: order.index(k) if k in order else len(order))
    result = {}
    for name in keys:
        value = data[name]
        if (
            value is None
            and name in fields
            and fields[name].default is None
            and not fields[name].is_required()
        ):
            continue
        if isinstance(value, dict) and not key and name in _MODELS:
            value = _ordered(value, name)
        result[name] = value
    return result


def dump_spec(spec: dict[str, Any], suffix: str = ".yaml") -> bytes:
    """The bytes the page saves for ``spec`` (JSON for a ``.json`` spec file, else YAML)."""
    data = _ordered(spec)
    if suffix.lower() == ".json":
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1_000_000)
    return text.encode()


def load_text(content: bytes) -> Any:
    """The data of saved spec bytes (what revert and the edit form start from); None if unreadable."""
    try:
        return yaml.load(content, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None


def _errors_of(message: str, path: Path, target: Path) -> list[FieldError]:
    """The loader's ``<file>:<line>: <field>: <problem>`` lines as field errors (at ``target``'s name)."""
    pattern = re.compile(rf"^{re.escape(str(path))}(?::(\d+))?: (\S+?): ", re.MULTILINE)
    errors: list[FieldError] = []
    matches = list(pattern.finditer(message))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(message)
        text = message[match.end() : end].strip().replace(str(path), str(target))
        errors.append(FieldError(match.group(2), text, int(match.group(1)) if match.group(1) else None))
    return errors or [FieldError("(spec)", message.replace(str(path), str(target)))]


def check_text(content: bytes, target: Path, *, max_bytes: int) -> list[FieldError]:
    """
    Every problem of spec file bytes ``content`` that would be saved as ``target``: the page's
    limits, then ``airflow byo validate``'s checks; [] when it may be saved.
    """
    from airflow_byo.exceptions import ByoFlowSpecError
    from airflow_byo.specs.factory import load_flow
    from airflow_byo.specs.loader import read_spec

    with tempfile.TemporaryDirectory(prefix="byo-editor-") as folder:
        path = Path(folder) / target.name
        path.write_bytes(content)
        try:
            document = read_spec(path, max_bytes=max_bytes)
        except ByoFlowSpecError as exc:
            return _errors_of(str(exc), path, target)
        problems = page_problems(document.data)
        if problems:  # before load_flow: a reference must never be imported
            return [
                FieldError(".".join(map(str, loc)), message, document.line(loc)) for loc, message in problems
            ]
        try:
            load_flow(path)
        except ByoFlowSpecError as exc:
            return _errors_of(str(exc), path, target)
        except Exception as exc:  # noqa: BLE001 - the factory's own bug: said, never a 500
            return [FieldError("(spec)", f"unexpected {type(exc).__name__} while checking the spec: {exc}")]
    return []
