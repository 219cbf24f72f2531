"""
Where a flow's function comes from (airflow_byo.processor) and how it is checked before any file:
inline code, callables and ``module:function`` references. Loading it inside the child is
tests/runtime/test_function_loader.py.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoError, ByoProcessorError
from airflow_byo.processor import DEFAULT_FUNCTION_NAME, ProcessorSource, resolve_processor

ROOT = Path(__file__).resolve().parents[1]

SIGNATURE_HINT = "Hint: a processor must accept the input file and the context first, then the custom_code"


# -- module-level processors used as callables ----------------------------------------------------


def module_level(file: Any, ctx: Any) -> None:
    return None


def with_factor(file: Any, ctx: Any, factor: int) -> int:
    return factor


def _register(func: Callable[..., Any]) -> Callable[..., Any]:
    return func


def _tagged(*tags: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        return func

    return decorate


@_register
@_tagged(
    "multi-line",
    "decorator",
)
def decorated(file: Any, ctx: Any) -> str:
    return "decorated"


class Holder:
    def method(self, file: Any, ctx: Any) -> None:
        return None


# -- resolve_processor: callables -----------------------------------------------------------------


def test_module_level_function_is_shipped_as_its_source() -> None:
    source = resolve_processor(module_level)
    assert source.function_name == "module_level"
    assert source.reference is None
    assert source.code == "def module_level(file: Any, ctx: Any) -> None:\n    return None\n"
    source.check([], {})


def test_decorators_are_stripped_from_a_callable() -> None:
    source = resolve_processor(decorated)
    assert source.function_name == "decorated"
    assert source.code is not None
    assert source.code.startswith("def decorated(file: Any, ctx: Any) -> str:")
    assert "@" not in source.code
    assert "multi-line" not in source.code
    source.check([], {})


def test_function_name_of_a_callable_is_its_own_name() -> None:
    assert resolve_processor(module_level, "other").function_name == "module_level"


def test_a_nested_function_without_free_variables_is_dedented() -> None:
    def inner(file: Any, ctx: Any) -> int:
        return 2

    source = resolve_processor(inner)
    assert source.code is not None
    assert source.code.startswith("def inner(file: Any, ctx: Any) -> int:\n    return 2")


def test_lambda_is_rejected() -> None:
    with pytest.raises(ByoProcessorError) as raised:
        resolve_processor(lambda file, ctx: None)
    message = str(raised.value)
    assert "cannot be shipped to the flow's environment" in message
    assert "pass a function defined with `def` at module level" in message
    assert "(lambdas, methods and builtins are not supported)" in message


@pytest.mark.parametrize(
    "func",
    [Holder().method, len, functools.partial(with_factor, factor=1), Holder],
    ids=["bound-method", "builtin", "partial", "class"],
)
def test_methods_builtins_partials_and_classes_are_rejected(func: Any) -> None:
    with pytest.raises(ByoProcessorError) as raised:
        resolve_processor(func)
    message = str(raised.value)
    assert message.startswith(f"processor {func!r} cannot be shipped to the flow's environment")
    assert "lambdas, methods and builtins are not supported" in message


def test_closure_is_rejected_naming_its_free_variables() -> None:
    limit = 3
    prefix = "x"

    def closure(file: Any, ctx: Any) -> str:
        return f"{prefix}{limit}"

    with pytest.raises(ByoProcessorError) as raised:
        resolve_processor(closure)
    message = str(raised.value)
    assert "processor 'closure' uses variables of an enclosing function (limit, prefix)" in message
    assert "define it at module level and pass values through custom_code args/kwargs" in message


def test_function_without_source_is_rejected() -> None:
    namespace: dict[str, Any] = {}
    exec("def made(file, ctx):\n    return 1\n", namespace)
    with pytest.raises(ByoProcessorError, match=r"^cannot read the source of processor 'made': "):
        resolve_processor(namespace["made"])


def test_callable_signature_is_checked_against_custom_code() -> None:
    source = resolve_processor(with_factor)
    source.check([2], {})
    source.check([], {"factor": 2})
    with pytest.raises(ByoProcessorError) as raised:
        source.check([], {})
    message = str(raised.value)
    assert "processor with_factor(file, ctx, factor) cannot be called as with_factor(file, ctx)" in message
    assert "missing a required argument: 'factor'" in message
    assert SIGNATURE_HINT in message


# -- resolve_processor: references ----------------------------------------------------------------


def test_reference_is_parsed() -> None:
    source = resolve_processor("pkg.mod:func")
    assert source == ProcessorSource(function_name="func", reference="pkg.mod:func", sys_path=[])
    assert source.code is None
    source.check(["ignored"], {"not": "checked here"})  # references are checked by the child
    stdlib = resolve_processor("json:dumps")
    assert (stdlib.reference, stdlib.function_name, stdlib.sys_path) == ("json:dumps", "dumps", [])


def test_reference_is_stripped_and_function_name_may_agree() -> None:
    source = resolve_processor("  pkg.mod:func\n", "func")
    assert (source.reference, source.function_name) == ("pkg.mod:func", "func")


def test_reference_function_name_mismatch() -> None:
    with pytest.raises(ByoProcessorError) as raised:
        resolve_processor("pkg.mod:func", "other")
    assert str(raised.value) == (
        "processor reference 'pkg.mod:func' names function 'func' but function_name is 'other'; "
        "drop function_name or make them agree"
    )


def test_reference_to_a_module_beside_the_dags_ships_its_directory() -> None:
    source = resolve_processor("tests.test_processor:module_level")
    assert source.sys_path == [str(ROOT)]


def test_single_file_module_ships_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "byo_probe_single.py").write_text("def process(file, ctx):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_processor("byo_probe_single:process").sys_path == [str(tmp_path.resolve())]


@pytest.mark.parametrize("reference", ["json:dumps", "json.decoder:JSONDecoder", "pydantic:BaseModel"])
def test_standard_library_and_installed_modules_are_not_shipped(reference: str) -> None:
    assert resolve_processor(reference).sys_path == []


# -- resolve_processor: inline code and bad strings -----------------------------------------------


def test_inline_code_defaults_to_process_and_is_dedented() -> None:
    code = """
        def process(file, ctx):
            return b""
    """
    source = resolve_processor(code)
    assert source.function_name == DEFAULT_FUNCTION_NAME == "process"
    assert source.code == textwrap.dedent(code)
    assert source.reference is None
    source.check([], {})


def test_inline_code_with_another_function_name() -> None:
    source = resolve_processor("def handle(file, ctx):\n    pass\n", "handle")
    assert source.function_name == "handle"
    source.check([], {})


def test_one_line_definition_is_code() -> None:
    assert (
        resolve_processor("def process(file, ctx): return b''").code == "def process(file, ctx): return b''"
    )


@pytest.mark.parametrize("text", ["clean_customers", "pkg.mod.func", "lambda file, ctx: None", "pkg/mod:f"])
def test_neither_code_nor_reference(text: str) -> None:
    with pytest.raises(ByoProcessorError) as raised:
        resolve_processor(text)
    message = str(raised.value)
    assert message.startswith(f"processor {text!r} is neither code nor a reference: ")
    assert "`def process(file, ctx): ...`" in message
    assert "'package.module:function' for an importable function" in message


def test_neither_code_nor_reference_quotes_at_most_80_characters() -> None:
    text = "x" * 200
    with pytest.raises(ByoProcessorError) as raised:
        resolve_processor(text)
    assert f"processor {'x' * 80!r} is neither" in str(raised.value)


@pytest.mark.parametrize("empty", ["", "   ", "\n\t"])
def test_empty_processor(empty: str) -> None:
    with pytest.raises(ByoProcessorError) as raised:
        resolve_processor(empty)
    assert str(raised.value).startswith(
        "processor is empty: give inline code defining `def process(file, ctx)"
    )


def test_processor_of_a_wrong_type_names_the_type() -> None:
    with pytest.raises(ByoProcessorError) as raised:
        resolve_processor(42)  # type: ignore[arg-type]
    assert "int" in str(raised.value)
    assert "empty" not in str(raised.value)


def test_processor_errors_belong_to_the_project_hierarchy() -> None:
    with pytest.raises(ByoError):
        resolve_processor("")


# -- ProcessorSource.check / check_source ---------------------------------------------------------


def check(code: str, function_name: str = "process", args: Any = (), kwargs: Any = None) -> None:
    resolve_processor(code, function_name).check(list(args), dict(kwargs or {}))


def test_syntax_error_names_the_line_and_gives_a_hint() -> None:
    code = "import csv\n\ndef process(file, ctx)\n    return None\n"
    with pytest.raises(ByoProcessorError) as raised:
        check(code)
    message = str(raised.value)
    assert message.startswith("syntax error in processor code: ")
    assert "'def process(file, ctx)'" in message
    hint = "Hint: fix the code; `python -m py_compile yourfile.py` shows the same error locally"
    assert f"(line 3). {hint}" in message


def test_missing_function_lists_the_defined_functions() -> None:
    code = "def transform(file, ctx):\n    pass\n\nasync def helper():\n    pass\n"
    with pytest.raises(ByoProcessorError) as raised:
        check(code)
    assert str(raised.value) == (
        "processor code defines no top-level function named 'process' "
        "(functions defined: helper, transform). "
        "Hint: set function_name to the function to call, or rename the function"
    )


def test_missing_function_when_none_is_defined() -> None:
    with pytest.raises(ByoProcessorError, match=r"named 'handle' \(functions defined: none\)"):
        check("x = 1\ny = 2\n", "handle")


def test_nested_function_is_not_top_level() -> None:
    code = "if True:\n    def process(file, ctx):\n        pass\n"
    with pytest.raises(ByoProcessorError, match=r"no top-level function named 'process'"):
        check(code)


def test_assigned_processor_is_left_to_the_child() -> None:
    check("def make():\n    return lambda file, ctx: None\n\nprocess = make()\n")
    check("import json\nfrom json import dumps as process\n")


def test_async_processor_is_rejected() -> None:
    with pytest.raises(ByoProcessorError) as raised:
        check("import asyncio\n\nasync def process(file, ctx):\n    pass\n")
    assert str(raised.value) == (
        "processor 'process' is `async def`; processors are plain functions (line 3). "
        "Hint: drop `async` (the runtime calls the function once per file)"
    )


@pytest.mark.parametrize(
    ("signature", "shown"),
    [("file", "process(file)"), ("", "process()"), ("file, *, ctx", "process(file, *, ctx)")],
)
def test_signature_that_cannot_take_file_and_ctx(signature: str, shown: str) -> None:
    with pytest.raises(ByoProcessorError) as raised:
        check(f"\ndef process({signature}):\n    pass\n")
    message = str(raised.value)
    assert message.startswith(
        f"processor {shown} cannot be called as process(file, ctx) with custom_code args=[] kwargs=[]: "
    )
    assert "(line 2)" in message
    assert SIGNATURE_HINT in message
    assert "e.g. `def process(file, ctx, *args, **kwargs):`" in message


def test_missing_custom_code_argument() -> None:
    with pytest.raises(ByoProcessorError) as raised:
        check("def process(file, ctx, factor):\n    pass\n")
    assert "missing a required argument: 'factor'" in str(raised.value)
    check("def process(file, ctx, factor):\n    pass\n", args=[2])


def test_too_many_custom_code_args() -> None:
    with pytest.raises(ByoProcessorError) as raised:
        check("def process(file, ctx, factor):\n    pass\n", args=[1, 2])
    message = str(raised.value)
    assert "cannot be called as process(file, ctx, *args) with custom_code args=[1, 2] kwargs=[]" in message
    assert "too many positional arguments" in message


def test_custom_code_kwargs_that_do_not_bind() -> None:
    with pytest.raises(ByoProcessorError) as raised:
        check("def process(file, ctx, factor=1):\n    pass\n", kwargs={"fctor": 2})
    message = str(raised.value)
    assert (
        "processor process(file, ctx, factor=None) cannot be called as process(file, ctx, **kwargs) "
        "with custom_code args=[] kwargs=['fctor']: got an unexpected keyword argument 'fctor'"
    ) in message
    assert SIGNATURE_HINT in message


def test_required_keyword_only_argument() -> None:
    code = "def process(file, ctx, *, mode):\n    pass\n"
    with pytest.raises(ByoProcessorError, match=r"missing a required argument: 'mode'"):
        check(code)
    check(code, kwargs={"mode": "fast"})


@pytest.mark.parametrize(
    ("signature", "args", "kwargs"),
    [
        ("file, ctx, *args, **kwargs", [1, 2, 3], {"a": 1}),
        ("file, ctx, /", [], {}),
        ("*args", [1], {}),
        ("file, ctx, factor=2, *, mode='x', **rest", [3], {"mode": "y", "other": 1}),
        ("f, c, a, b=1, *more, k=2", [1, 2, 3], {"k": 3}),
    ],
)
def test_signatures_that_bind(signature: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    check(f"def process({signature}):\n    pass\n", args=args, kwargs=kwargs)
