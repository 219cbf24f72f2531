"""
Where a flow's function comes from: inline code, a Python callable, or ``"module:function"``.

All three become a :class:`ProcessorSource`, which is what the child receives. Inline code and
callables are checked here without running them (syntax, function name, signature), so a bad
processor fails before any file is touched; references are checked by the child on start-up,
also before the first file.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import sys
import sysconfig
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoProcessorError
from airflow_byo.runtime.function_loader import ProcessorLoadError, check_source

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DEFAULT_FUNCTION_NAME", "ProcessorSource", "resolve_processor"]

DEFAULT_FUNCTION_NAME = "process"
_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ProcessorSource:
    """The processor as the child loads it: inline ``code`` or an importable ``reference``."""

    function_name: str
    code: str | None = None
    reference: str | None = None
    sys_path: list[str] = field(default_factory=list)

    def check(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Check inline code against the custom_code args/kwargs, without running it."""
        if self.code is None:
            return
        try:
            check_source(self.code, self.function_name, args, kwargs)
        except ProcessorLoadError as exc:
            raise ByoProcessorError(exc.render()) from None


def _source_of_callable(func: Callable[..., Any]) -> ProcessorSource:
    name = getattr(func, "__name__", "")
    if not name or name == "<lambda>" or not inspect.isfunction(func):
        raise ByoProcessorError(
            f"processor {func!r} cannot be shipped to the flow's environment: pass a function "
            "defined with `def` at module level (lambdas, methods and builtins are not supported)"
        )
    if func.__closure__:
        raise ByoProcessorError(
            f"processor {name!r} uses variables of an enclosing function "
            f"({', '.join(func.__code__.co_freevars)}); "
            "it runs in a separate process, so define it at module level and pass values through "
            "custom_code args/kwargs or runtime variables"
        )
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError) as exc:
        raise ByoProcessorError(f"cannot read the source of processor {name!r}: {exc}") from None
    # Drop decorators (e.g. @task.byo): the child calls the plain function.
    node = ast.parse(source).body[0]
    lines = source.splitlines(keepends=True)
    code = "".join(lines[node.lineno - 1 :])
    return ProcessorSource(function_name=name, code=code)


def _sys_path_for(module_name: str) -> list[str]:
    """
    Directories the child needs to import ``module_name`` when it lives beside the DAGs.

    Modules installed in the worker's site-packages are not shared: the child must get them
    through the flow's ``packages`` so its environment stays pinned and isolated.
    """
    top = module_name.split(".", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return []
    origin = Path(spec.origin).resolve()
    paths = sysconfig.get_paths()
    # Installed and standard-library modules are not shipped: the child gets its own.
    installed = {Path(paths[key]).resolve() for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    if any(parent in installed for parent in origin.parents):
        return []
    root = origin.parent.parent if spec.submodule_search_locations else origin.parent
    return [str(root)] if str(root) not in ("", sys.prefix) else []


def resolve_processor(
    processor: str | Callable[..., Any],
    function_name: str | None = None,
) -> ProcessorSource:
    """
    Turn the ``processor`` argument of a flow into a :class:`ProcessorSource`.

    :param processor: inline code (a string with a ``def``), ``"package.module:function"``, or a
        Python function.
    :param function_name: function to call in inline code (default ``process``).
    """
    if callable(processor):
        return _source_of_callable(processor)
    if not isinstance(processor, str):
        raise ByoProcessorError(
            "processor must be inline code, a 'package.module:function' reference or a Python "
            f"function, got {type(processor).__name__}"
        )
    if not processor.strip():
        raise ByoProcessorError(
            "processor is empty: give inline code defining `def process(file, ctx): ...`, "
            "a reference 'package.module:function', or a Python function"
        )
    text = processor.strip()
    if _REFERENCE.match(text):
        module_name, _, attr = text.partition(":")
        if function_name and function_name != attr:
            raise ByoProcessorError(
                f"processor reference {text!r} names function {attr!r} but function_name is "
                f"{function_name!r}; drop function_name or make them agree"
            )
        return ProcessorSource(function_name=attr, reference=text, sys_path=_sys_path_for(module_name))
    if "\n" not in text and "def " not in text:
        raise ByoProcessorError(
            f"processor {text[:80]!r} is neither code nor a reference: write inline code with "
            "`def process(file, ctx): ...`, or 'package.module:function' for an importable function"
        )
    return ProcessorSource(
        function_name=function_name or DEFAULT_FUNCTION_NAME, code=textwrap.dedent(processor)
    )
