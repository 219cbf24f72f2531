"""
The checks the DAG build of a flow spec makes, reported at the spec's own lines.

``ByoFlowOperator`` and the path policy check a flow at parse time, and their errors name operator
arguments. :func:`airflow_byo.specs.factory.load_flow` runs the same checks on a spec first and
turns each error into ``<file>:<line>: <field.path>: <problem>. Fix: ...`` at the field it is
about: the processor (:func:`check_processor`), the local paths (:func:`check_locations`), and, for
what only the build itself finds, the field its message names (:func:`field_of_build_error`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from airflow_byo.exceptions import ByoError, ByoFlowSpecError

if TYPE_CHECKING:
    from airflow_byo.specs.loader import SpecDocument
    from airflow_byo.specs.model import FlowSpec

__all__ = ["check_locations", "check_processor", "field_of_build_error", "split_fix"]

_CODE_LINE = re.compile(r" \(line (\d+)\)")


def split_fix(message: str) -> tuple[str, str]:
    """A project error's message as (problem, fix): ``<problem>. Hint: <fix>`` or ``<problem>; <fix>``."""
    for separator in (". Hint: ", ". Fix: ", "; "):
        problem, found, fix = message.partition(separator)
        if found:
            return problem, fix
    return message, ""


def _processor_field(
    document: SpecDocument, spec: FlowSpec, message: str
) -> tuple[tuple[str, ...], int | None]:
    """The spec field (and line) a processor error is about."""
    processing = spec.processing
    if "cannot be called as" in message:  # the signature does not take custom_code's args/kwargs
        custom = ("processing", "runtime_config", "custom_code")
        config = processing.runtime_config.get("custom_code") or {}
        keyword = "keyword" in message or ("kwargs" in config and "args" not in config)
        if keyword and "kwargs" in config:
            return (*custom, "kwargs"), None
        if "args" in config:
            return (*custom, "args"), None
        return custom, None
    if processing.function:
        return ("processing", "function"), None
    if processing.reference:
        return ("processing", "reference"), None
    if "defines no top-level function" in message and processing.function_name:
        return ("processing", "function_name"), None
    line = None
    node = document.value_node(("processing", "code"))
    match = _CODE_LINE.search(message)
    if node is not None and match:  # the line inside the code, as a line of the spec file
        line = node.start_mark.line + int(match.group(1)) + (1 if node.style in ("|", ">") else 0)
    return ("processing", "code"), line


def check_processor(document: SpecDocument, spec: FlowSpec) -> None:
    """What ``ByoFlowOperator`` checks at parse time, reported at the spec's lines."""
    from airflow_byo.processor import resolve_processor
    from airflow_byo.runtime_config import parse_runtime_config

    try:
        processor, function_name, _, _ = spec.processing.resolved()
    except ByoError as exc:  # e.g. a library function that does not exist
        raise ByoFlowSpecError(document.error(("processing", "function"), *split_fix(str(exc)))) from None
    try:
        source = resolve_processor(processor, function_name)
        config = parse_runtime_config(spec.processing.runtime_config)
        source.check(list(config.custom_code.args), dict(config.custom_code.kwargs))
    except ByoError as exc:
        message = str(exc)
        loc, line = _processor_field(document, spec, message)
        raise ByoFlowSpecError(document.error(loc, *split_fix(message), line=line)) from None


def check_locations(document: SpecDocument, spec: FlowSpec) -> None:
    """The path policy on the source and destination, reported at their ``path`` lines."""
    from airflow_byo.path_policy import check_local_path

    for key in ("source", "destination"):
        try:
            check_local_path(getattr(spec, key).url_from(document.path), key)
        except ByoError as exc:
            raise ByoFlowSpecError(document.error((key, "path"), *split_fix(str(exc)))) from None


def field_of_build_error(message: str) -> tuple[str, ...]:
    """Best guess at the field an error of the DAG build is about (the message names it)."""
    candidates = [
        ("source", name)
        for name in (
            "include",
            "exclude",
            "modified_after",
            "min_size",
            "max_size",
            "follow_symlinks",
            "path",
        )
    ] + [("processing", "packages"), ("processing", "runtime_config"), ("destination", "path"), ("schedule",)]
    for loc in candidates:
        if re.search(rf"\b{loc[-1]}\b", message):
            return loc
    return ()
