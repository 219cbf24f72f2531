"""
What the page knows about each BYO flow, read from Airflow's metadata database.

The api-server never parses DAG files: it reads serialized DAGs. A BYO flow is a task of a
serialized DAG whose ``_task_module`` is one of ours; the serialized form holds the operator's
template fields (source, destination, conn ids, filters, packages, runtime_config, and the
flow's ledger -- ``flow_id``, ``ledger_conn_id`` -- and runtime) as the DAG file wrote them,
templates unrendered, but not the processor, which is not a template field. Where the processor
code comes from, and why:

- **spec flows** (``doc_md`` says "Generated from flow spec `<file>`"): the spec file is read
  with the spec loader (YAML only, nothing executed), so the page shows exactly what the DAG
  factory built, library functions resolved;
- **operator and ``@task.byo`` flows**: the DAG file's source, which Airflow stores in the
  metadata DB (``DagCode``) for its own Code tab, is parsed with :mod:`ast` -- never imported or
  run in the api-server -- to find the decorated function or the ``processor=`` argument (a
  module-level function, a string constant or a ``"module:function"`` reference).

Both are read-only views of what the DAG author committed: no record to keep in sync, and no
operator change that every serialized DAG would carry. What the static read cannot resolve
(a processor computed at parse time) is reported as such; the test panel still takes pasted code.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["Flow", "ProcessorCode", "find_flows", "processor_code", "redact_url"]

#: ``_task_module`` values of the serialized tasks that are BYO flows.
FLOW_MODULES = {"airflow_byo.operators.byo_flow": "operator", "airflow_byo.decorators.byo": "decorator"}
_SPEC_DOC = re.compile(r"Generated from flow spec `([^`]+)`")
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)
#: Template fields read as the flow's settings (never a connection's secret: only conn ids).
SETTINGS = (
    "source",
    "source_conn_id",
    "include",
    "exclude",
    "modified_after",
    "destination",
    "destination_conn_id",
    "packages",
    "runtime_config",
    "quarantine",
    "flow_id",
    "ledger_conn_id",
    "runtime",
    "python_interpreter",
    "allow_direct_urls",
)


@dataclass
class Flow:
    """One BYO flow task of a serialized DAG."""

    dag_id: str
    task_id: str
    style: str  # operator, decorator or spec
    settings: dict[str, Any]
    dag: dict[str, Any]  # the serialized DAG (without its tasks)
    spec_file: str | None = None

    @property
    def flow_id(self) -> str:
        """
        The flow's name in the ledger: the operator's ``flow_id`` (spec flows set
        ``<spec name>.flow``), else ``<dag_id>.<task_id>`` as the operator defaults it.
        """
        return str(self.settings.get("flow_id") or f"{self.dag_id}.{self.task_id}")

    @property
    def ledger_conn_id(self) -> str | None:
        """The flow's own ledger connection; None is ``[byo] ledger_conn_id`` or the default SQLite."""
        return self.settings.get("ledger_conn_id") or None

    @property
    def runtime(self) -> str | None:
        """The flow's named runtime; None is the built-in ``default``."""
        return self.settings.get("runtime") or None

    @property
    def python_interpreter(self) -> str | None:
        """The existing interpreter the flow runs in instead of a built virtualenv, if any."""
        return self.settings.get("python_interpreter") or None

    @property
    def allow_direct_urls(self) -> bool:
        """Whether the flow's packages may name ``name @ https://...`` requirements."""
        return bool(self.settings.get("allow_direct_urls"))

    @property
    def templated_ledger(self) -> dict[str, str]:
        """``flow_id``/``ledger_conn_id`` still holding a template: the page cannot tell the ledger."""
        return {
            name: value
            for name in ("flow_id", "ledger_conn_id")
            if isinstance(value := self.settings.get(name), str) and "{{" in value
        }

    @property
    def key(self) -> str:
        return f"{self.dag_id}/{self.task_id}"

    @property
    def packages(self) -> Any:
        return self.settings.get("packages")


def redact_url(value: Any) -> Any:
    """A URL without ``user:password@`` (secrets live in connections, but a URL may carry some)."""
    return _USERINFO.sub(r"\1***@", value) if isinstance(value, str) else value


@dataclass
class ProcessorCode:
    """The flow's processor as the page shows and tests it."""

    code: str | None
    function_name: str = "process"
    packages: Any = None
    reference: str | None = None  # "module:function" processors
    origin: str = ""  # where it was read from
    problem: str | None = None  # why the code could not be read
    runtime_config: Any = field(default=None)


def _plain(value: Any) -> Any:
    """A serialized value without Airflow's ``{"__type": ..., "__var": ...}`` wrappers."""
    if isinstance(value, dict):
        if "__var" in value and "__type" in value:
            return _plain(value["__var"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def flows_of_dag(data: dict[str, Any]) -> list[Flow]:
    """The BYO flow tasks of one serialized DAG (``SerializedDagModel.data``)."""
    dag = data.get("dag") or {}
    found = []
    for task in dag.get("tasks") or []:
        var = task.get("__var", task)
        style = FLOW_MODULES.get(var.get("_task_module", ""))
        if not style:
            continue
        spec = _SPEC_DOC.search(dag.get("doc_md") or "")
        settings = {name: _plain(var[name]) for name in SETTINGS if var.get(name) not in (None, "", [])}
        found.append(
            Flow(
                dag_id=dag["dag_id"],
                task_id=var["task_id"],
                style="spec" if spec else style,
                settings=settings,
                dag={k: v for k, v in dag.items() if k != "tasks"},
                spec_file=spec.group(1) if spec else None,
            )
        )
    return found


def find_flows(session: Session, dag_ids: set[str] | None = None) -> list[Flow]:
    """Every BYO flow of the latest serialized version of every (readable) DAG."""
    from airflow.models.serialized_dag import SerializedDagModel

    rows = session.scalars(
        SerializedDagModel._latest_by_version_select(sorted(dag_ids) if dag_ids is not None else None)
    )
    flows = [flow for row in rows for flow in flows_of_dag(row.data or {})]
    return sorted(flows, key=lambda f: (f.dag_id, f.task_id))


# -- the processor's code ---------------------------------------------------------------------------


def processor_code(flow: Flow, fileloc: str | None, dag_source: str | None) -> ProcessorCode:
    """The code of ``flow``'s processor: from its spec file, else from its DAG file's source."""
    if flow.spec_file:
        return _from_spec(flow, fileloc)
    if not dag_source:
        return ProcessorCode(None, problem="the DAG file's source is not in the metadata database")
    try:
        tree = ast.parse(dag_source)
    except SyntaxError as exc:
        return ProcessorCode(None, problem=f"the DAG file does not parse: {exc}")
    if flow.style == "decorator":
        return _decorated(tree, dag_source, flow.task_id)
    return _operator_argument(tree, dag_source, flow.task_id)


def _from_spec(flow: Flow, fileloc: str | None) -> ProcessorCode:
    from airflow_byo.specs.loader import load_spec

    assert flow.spec_file is not None
    path = Path(flow.spec_file)
    if not path.is_absolute() and fileloc:  # a relative name is relative to the parser's cwd
        candidates = [Path(fileloc).parent / path, Path(fileloc).parent / path.name, path]
        path = next((p for p in candidates if p.is_file()), path)
    if path.suffix not in (".yaml", ".yml", ".json"):
        return ProcessorCode(None, problem=f"{flow.spec_file} is not a flow spec file")
    try:
        spec = load_spec(path)
        code, function_name, packages, _runtime = spec.processing.resolved()
    except Exception as exc:  # noqa: BLE001 -- the page shows why, the DAG's own import errors say more
        return ProcessorCode(None, problem=f"cannot read flow spec {path}: {exc}")
    processing = spec.processing
    origin = f"flow spec {path}" + (
        f" (library function {processing.function})" if processing.function else ""
    )
    if processing.reference:
        return ProcessorCode(None, reference=code, packages=packages, origin=origin)
    return ProcessorCode(
        code,
        function_name or "process",
        packages,
        origin=origin,
        runtime_config=processing.runtime_config,
    )


def _segment(source: str, node: ast.AST) -> str:
    text = ast.get_source_segment(source, node, padded=True) or ""
    return textwrap.dedent(text).strip("\n") + "\n"


def _is_byo_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, ast.Attribute) and target.attr == "byo"


def _decorated(tree: ast.Module, source: str, task_id: str) -> ProcessorCode:
    candidates = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and any(_is_byo_decorator(d) for d in node.decorator_list)
    ]
    chosen = next(
        (n for n in candidates if n.name == task_id), candidates[0] if len(candidates) == 1 else None
    )
    if chosen is None:
        return ProcessorCode(None, problem=f"no @task.byo function named {task_id!r} in the DAG file")
    return ProcessorCode(
        _segment(source, chosen), chosen.name, origin="the @task.byo function of the DAG file"
    )


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _operator_argument(tree: ast.Module, source: str, task_id: str) -> ProcessorCode:
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) == "ByoFlowOperator"
    ]
    call = next(
        (c for c in calls if isinstance(k := _keyword(c, "task_id"), ast.Constant) and k.value == task_id),
        calls[0] if len(calls) == 1 else None,
    )
    if call is None:
        return ProcessorCode(None, problem=f"no ByoFlowOperator(task_id={task_id!r}) call in the DAG file")
    name = _keyword(call, "function_name")
    function_name = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else None
    processor = _keyword(call, "processor")
    if isinstance(processor, ast.Name):  # a module-level function or string constant
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == processor.id:
                return ProcessorCode(
                    _segment(source, node), node.name, origin=f"function {node.name} of the DAG file"
                )
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == processor.id for t in node.targets
            ):
                processor = node.value
                break
    if isinstance(processor, ast.Constant) and isinstance(processor.value, str):
        text = processor.value
        if re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", text):
            return ProcessorCode(None, reference=text, origin="a module:function reference")
        return ProcessorCode(
            textwrap.dedent(text), function_name or "process", origin="inline code of the DAG file"
        )
    return ProcessorCode(
        None, problem="the processor is computed when the DAG file runs; paste its code to test it"
    )
