"""
The form's spec before it is saved: checked (``POST /api/editor/validate``) and tested on a file
(``POST /api/editor/test``) as the flow it would become.

A test builds the :class:`~airflow_byo.plugins.flows.Flow` a serialized spec flow has -- source,
connection, filters, destination, packages, runtime, runtime configuration, ``flow_id`` -- and runs
the page's one Test engine on it (:func:`airflow_byo.plugins.testing.run_test`: same sandbox,
limits and rules as a saved flow's Test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_byo.plugins.editor.page_rules import page_problems
from airflow_byo.plugins.editor.validation import FieldError, check_text, dump_spec

__all__ = ["run_unsaved_test", "unsaved_flow", "validate"]


def _target(spec: dict[str, Any]) -> Path:
    """
    Where the spec would be saved: its own file when the spec folder has one for its name (a
    ``.json`` spec stays JSON), else ``<name>.yaml`` there (a stand-in folder when none is set).
    """
    from airflow_byo.exceptions import ByoError
    from airflow_byo.plugins.editor.settings import spec_folder
    from airflow_byo.plugins.editor.spec_store import SpecStore
    from airflow_byo.specs.loader import max_spec_bytes

    try:
        folder = spec_folder()
    except ByoError:
        folder = None
    name = spec.get("name")
    name = name if isinstance(name, str) else "flow"
    if folder is not None and folder.is_dir() and (file := SpecStore(folder, max_spec_bytes()).locate(name)):
        return folder / file
    return (folder or Path("/spec-folder-not-set")) / f"{name}.yaml"


def validate(spec: dict[str, Any]) -> dict[str, Any]:
    """``{ok, errors, yaml}``: the checks of a save, on the YAML the page would write."""
    from airflow_byo.specs.loader import max_spec_bytes

    target = _target(spec)
    content = dump_spec(spec, target.suffix)
    errors = check_text(content, target, max_bytes=max_spec_bytes())
    return {"ok": not errors, "errors": [e.as_dict() for e in errors], "yaml": content.decode()}


def _model_errors(spec: dict[str, Any]) -> list[FieldError]:
    from pydantic import ValidationError

    from airflow_byo.specs.model import FlowSpec

    try:
        FlowSpec.model_validate(spec)
    except ValidationError as exc:
        return [
            FieldError(".".join(map(str, e["loc"])) or "(spec)", e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
    return []


def unsaved_flow(spec: dict[str, Any]) -> tuple[Any, list[FieldError]]:
    """The flow the page would save, as the Test engine takes it; or the errors that prevent it."""
    from airflow_byo.exceptions import ByoError
    from airflow_byo.plugins.flows import Flow
    from airflow_byo.specs.model import FlowSpec

    problems = [FieldError(".".join(map(str, loc)), message) for loc, message in page_problems(spec)]
    errors = problems or _model_errors(spec)
    if errors:
        return None, errors
    model = FlowSpec.model_validate(spec)
    target = _target(spec)
    try:
        processor, function_name, packages, runtime = model.processing.resolved()
    except ByoError as exc:
        return None, [FieldError("processing.function", str(exc))]
    source, destination = model.source, model.destination
    settings = {
        "source": source.url_from(target),
        "source_conn_id": source.conn_id,
        "include": source.include,
        "exclude": source.exclude,
        "modified_after": source.modified_after,
        "destination": destination.url_from(target),
        "destination_conn_id": destination.conn_id,
        "packages": packages,
        "runtime_config": model.processing.runtime_config,
        "flow_id": f"{model.name}.flow",
        "runtime": runtime,
    }
    settings = {k: v for k, v in settings.items() if v not in (None, "", [])}
    flow = Flow(model.name, "flow", "spec", settings, {"dag_id": model.name}, spec_file=str(target))
    return (flow, processor, function_name or "process"), []


def run_unsaved_test(
    spec: dict[str, Any], test_file: str, user: str, wait: float | None
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """
    The Test of the unsaved spec on ``test_file`` as ``user`` (its result, or its place in the
    queue after ``wait`` seconds, as a flow's Test answers); or the errors that prevent a test.
    """
    from airflow_byo.plugins.testing import TestRequest, run_test

    built, errors = unsaved_flow(spec)
    if errors:
        return None, errors
    flow, processor, function_name = built
    request = TestRequest(
        code=processor,
        function_name=function_name,
        test_file=test_file,
        packages=flow.settings.get("packages"),
        runtime_config=flow.settings.get("runtime_config"),
    )
    return run_test(flow, request, user=user, wait=wait), []
