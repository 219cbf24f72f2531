"""
Find and check the user's processor function -- before any file is touched.

Used twice: by the worker on inline code without executing it (``check_source``, an AST-level
check, so the worker never runs user code or needs the flow's packages), and by the child inside
the virtualenv on the real function object (``load_processor``). Standard library only.
"""

from __future__ import annotations
import __future__

import ast
import importlib
import inspect
import linecache
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ProcessorLoadError", "check_signature", "check_source", "load_processor"]

INLINE_FILENAME = "<byo-processor>"

_SIGNATURE_HINT = (
    "a processor must accept the input file and the context first, then the custom_code "
    "args/kwargs, e.g. `def {name}(file, ctx, *args, **kwargs):`"
)


class ProcessorLoadError(Exception):
    """The processor cannot be used: bad code, missing function or incompatible signature."""

    def __init__(self, message: str, *, hint: str = "", lineno: int | None = None) -> None:
        self.message = message
        self.hint = hint
        self.lineno = lineno
        super().__init__(self.render())

    def render(self) -> str:
        where = f" (line {self.lineno})" if self.lineno else ""
        hint = f". Hint: {self.hint}" if self.hint else ""
        return f"{self.message}{where}{hint}"


def _signature_from_ast(node: ast.FunctionDef | ast.AsyncFunctionDef) -> inspect.Signature:
    """Build an ``inspect.Signature`` from a function's AST, defaults replaced by placeholders."""
    a = node.args
    params: list[inspect.Parameter] = []
    positional = [*a.posonlyargs, *a.args]
    first_default = len(positional) - len(a.defaults)
    for index, arg in enumerate(positional):
        kind = (
            inspect.Parameter.POSITIONAL_ONLY
            if index < len(a.posonlyargs)
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        default = None if index >= first_default else inspect.Parameter.empty
        params.append(inspect.Parameter(arg.arg, kind, default=default))
    if a.vararg:
        params.append(inspect.Parameter(a.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for arg, kw_default in zip(a.kwonlyargs, a.kw_defaults):  # noqa: B905 -- no strict= on Python 3.9
        default = inspect.Parameter.empty if kw_default is None else None
        params.append(inspect.Parameter(arg.arg, inspect.Parameter.KEYWORD_ONLY, default=default))
    if a.kwarg:
        params.append(inspect.Parameter(a.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def check_signature(
    signature: inspect.Signature,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    lineno: int | None = None,
) -> None:
    """Raise :class:`ProcessorLoadError` unless ``name(file, ctx, *args, **kwargs)`` binds."""
    try:
        signature.bind(object(), object(), *args, **kwargs)
    except TypeError as exc:
        raise ProcessorLoadError(
            f"processor {name}{signature} cannot be called as "
            f"{name}(file, ctx{', *args' if args else ''}{', **kwargs' if kwargs else ''}) "
            f"with custom_code args={args!r} kwargs={sorted(kwargs)!r}: {exc}",
            hint=_SIGNATURE_HINT.format(name=name),
            lineno=lineno,
        ) from None


def _syntax_error(exc: SyntaxError) -> ProcessorLoadError:
    line = (exc.text or "").rstrip("\n")
    pointer = f": {line.strip()!r}" if line.strip() else ""
    return ProcessorLoadError(
        f"syntax error in processor code: {exc.msg}{pointer}",
        hint="fix the code; `python -m py_compile yourfile.py` shows the same error locally",
        lineno=exc.lineno,
    )


def _defined_functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {
        node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def _bound_names(tree: ast.Module) -> set[str]:
    """Names bound at module level by assignments and imports (``process = make()``)."""
    names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names.add(stmt.target.id)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names.update(alias.asname or alias.name.split(".")[0] for alias in stmt.names)
    return names


def check_source(code: str, function_name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Check inline code without running it: it parses, defines ``function_name``, and binds."""
    try:
        tree = ast.parse(code, filename=INLINE_FILENAME)
    except SyntaxError as exc:
        raise _syntax_error(exc) from None
    functions = _defined_functions(tree)
    node = functions.get(function_name)
    if node is None:
        if function_name in _bound_names(
            tree
        ):  # e.g. `process = make_processor()` -- checked for real in the child
            return
        known = ", ".join(sorted(functions)) or "none"
        raise ProcessorLoadError(
            f"processor code defines no top-level function named {function_name!r} "
            f"(functions defined: {known})",
            hint="set function_name to the function to call, or rename the function",
        )
    if isinstance(node, ast.AsyncFunctionDef):
        raise ProcessorLoadError(
            f"processor {function_name!r} is `async def`; processors are plain functions",
            hint="drop `async` (the runtime calls the function once per file)",
            lineno=node.lineno,
        )
    check_signature(_signature_from_ast(node), function_name, args, kwargs, lineno=node.lineno)


def load_processor(
    *,
    code: str | None,
    function_name: str,
    reference: str | None,
    args: list[Any],
    kwargs: dict[str, Any],
) -> Callable[..., Any]:
    """Return the processor function, from inline ``code`` or a ``module:function`` reference."""
    if code is not None:
        check_source(code, function_name, args, kwargs)
        # Register the source so tracebacks from the user's function show its lines.
        linecache.cache[INLINE_FILENAME] = (len(code), None, code.splitlines(True), INLINE_FILENAME)
        # A real module in sys.modules: dataclasses and typing.get_type_hints look it up.
        module = types.ModuleType("byo_processor")
        module.__file__ = INLINE_FILENAME
        sys.modules["byo_processor"] = module
        namespace: dict[str, Any] = module.__dict__
        try:
            # Annotations stay strings (PEP 563): a function shipped from a DAG file may annotate
            # with names (Any, DataFrame) that its module imported but the child has not.
            exec(
                compile(code, INLINE_FILENAME, "exec", flags=__future__.annotations.compiler_flag), namespace
            )
        except Exception as exc:  # noqa: BLE001 - any error of the user's module code is reported
            raise ProcessorLoadError(
                f"processor code failed while loading: {type(exc).__name__}: {exc}",
                hint="module-level code runs once per batch; an ImportError usually means a "
                "package is missing from `packages`",
                lineno=_user_lineno(exc),
            ) from None
        func = namespace.get(function_name)
        where = "the processor code"
    else:
        assert reference is not None
        module_name, _, attr = reference.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any error of the user's module code is reported
            raise ProcessorLoadError(
                f"cannot import module {module_name!r} of processor {reference!r}: "
                f"{type(exc).__name__}: {exc}",
                hint="the module must be importable inside the flow's environment: add its "
                "distribution to `packages`, or keep it beside your DAG files",
            ) from None
        func = getattr(module, attr, None)
        where = f"module {module_name!r}"
    if not callable(func):
        raise ProcessorLoadError(
            f"{where} has no callable named {function_name!r}",
            hint="check the function name (reference form is 'package.module:function')",
        )
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without signatures: let the call decide
        return func
    check_signature(signature, function_name, args, kwargs)
    return func


def _user_lineno(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    lineno = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == INLINE_FILENAME:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    return lineno
