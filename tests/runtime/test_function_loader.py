"""
Loading a flow's function inside the child (airflow_byo.runtime.function_loader): the checks of
inline code before it runs, inline code and ``module:function`` references, and their errors.
"""

from __future__ import annotations

import linecache
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.runtime.function_loader import (
    INLINE_FILENAME,
    ProcessorLoadError,
    check_source,
    load_processor,
)

# -- check_source ---------------------------------------------------------------------------------


def test_syntax_error_as_a_processor_load_error() -> None:
    with pytest.raises(ProcessorLoadError) as raised:
        check_source("def process(file, ctx):\n    return (\n", "process", [], {})
    assert raised.value.lineno == 2
    assert raised.value.message.startswith("syntax error in processor code: ")
    assert raised.value.hint.startswith("fix the code")


@pytest.mark.parametrize(
    "code",
    [
        "import subprocess\n\ndef handle(file, ctx):\n    pass\n",
        "MODE = 'process'\n\ndef handle(file, ctx):\n    pass\n",
    ],
)
def test_substring_of_an_import_or_assignment_does_not_hide_a_missing_function(code: str) -> None:
    with pytest.raises(ProcessorLoadError, match=r"no top-level function named 'process'"):
        check_source(code, "process", [], {})


def test_check_source_does_not_run_the_code() -> None:
    check_source("raise SystemExit('ran')\n\ndef process(file, ctx):\n    pass\n", "process", [], {})


def test_processor_load_error_render() -> None:
    assert ProcessorLoadError("boom").render() == "boom"
    assert ProcessorLoadError("boom", lineno=3).render() == "boom (line 3)"
    assert str(ProcessorLoadError("boom", hint="fix it", lineno=3)) == "boom (line 3). Hint: fix it"


# -- load_processor: inline code ------------------------------------------------------------------


def load_code(code: str, function_name: str = "process", args: Any = (), kwargs: Any = None) -> Any:
    return load_processor(
        code=code, function_name=function_name, reference=None, args=list(args), kwargs=dict(kwargs or {})
    )


def test_inline_code_is_loaded_and_callable() -> None:
    func = load_code("SCALE = 3\n\ndef process(file, ctx, n):\n    return file * SCALE * n\n", args=[2])
    assert func(1, None, 2) == 6
    assert func.__module__ == "byo_processor"


def test_annotations_are_not_evaluated() -> None:
    """A function shipped from a DAG file may annotate with names the child never imported."""
    func = load_code("def process(file: InputFile, ctx: Context) -> DataFrame:\n    return 1\n")
    assert func(None, None) == 1
    assert func.__annotations__["return"] == "DataFrame"


def test_inline_code_checks_run_before_loading() -> None:
    with pytest.raises(ProcessorLoadError, match=r"no top-level function named 'process'"):
        load_code("raise SystemExit('must not run')\n\ndef other(file, ctx):\n    pass\n")
    with pytest.raises(ProcessorLoadError, match=r"missing a required argument: 'factor'"):
        load_code("def process(file, ctx, factor):\n    pass\n")


def test_error_in_module_level_code_names_the_line() -> None:
    with pytest.raises(ProcessorLoadError) as raised:
        load_code("import json\nRATE = 1 / 0\n\ndef process(file, ctx):\n    pass\n")
    error = raised.value
    assert error.message == "processor code failed while loading: ZeroDivisionError: division by zero"
    assert error.lineno == 2
    assert "an ImportError usually means a package is missing from `packages`" in error.hint


def test_missing_import_in_inline_code_points_at_packages() -> None:
    with pytest.raises(ProcessorLoadError) as raised:
        load_code("import byo_no_such_module_xyz\n\ndef process(file, ctx):\n    pass\n")
    message = str(raised.value)
    assert "ModuleNotFoundError: No module named 'byo_no_such_module_xyz' (line 1)" in message
    assert "missing from `packages`" in message


def test_assigned_name_that_is_not_callable() -> None:
    with pytest.raises(ProcessorLoadError) as raised:
        load_code("from os import sep as process\n")
    assert str(raised.value) == (
        "the processor code has no callable named 'process'. "
        "Hint: check the function name (reference form is 'package.module:function')"
    )


def test_assigned_callable_signature_is_checked_when_loaded() -> None:
    with pytest.raises(ProcessorLoadError, match=r"cannot be called as process\(file, ctx\)"):
        load_code("process = lambda file: None\n")
    assert load_code("process = lambda file, ctx: 'ok'\n")(None, None) == "ok"


def test_tracebacks_show_the_inline_source() -> None:
    func = load_code("def process(file, ctx):\n    return 1 / file\n")
    assert linecache.getline(INLINE_FILENAME, 2) == "    return 1 / file\n"
    with pytest.raises(ZeroDivisionError) as raised:
        func(0, None)
    assert "return 1 / file" in "".join(traceback.format_exception(raised.value))


def test_inline_code_may_define_a_dataclass() -> None:
    code = (
        "from dataclasses import dataclass\n\n@dataclass\nclass Row:\n    a: int\n\n"
        "def process(file, ctx):\n    return [Row(1).a]\n"
    )
    assert load_code(code)(None, None) == [1]


# -- load_processor: references -------------------------------------------------------------------


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for throwaway modules, forgotten again after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("byo_ref_"):
            del sys.modules[name]


def load_reference(reference: str, args: Any = (), kwargs: Any = None) -> Any:
    return load_processor(
        code=None,
        function_name=reference.partition(":")[2],
        reference=reference,
        args=list(args),
        kwargs=dict(kwargs or {}),
    )


def test_reference_is_imported(module_dir: Path) -> None:
    (module_dir / "byo_ref_ok.py").write_text("def process(file, ctx, factor=1):\n    return factor\n")
    func = load_reference("byo_ref_ok:process", kwargs={"factor": 4})
    assert func(None, None, factor=4) == 4


def test_reference_to_a_missing_module(module_dir: Path) -> None:
    with pytest.raises(ProcessorLoadError) as raised:
        load_reference("byo_ref_missing.mod:process")
    error = raised.value
    assert error.message == (
        "cannot import module 'byo_ref_missing.mod' of processor 'byo_ref_missing.mod:process': "
        "ModuleNotFoundError: No module named 'byo_ref_missing'"
    )
    assert "add its distribution to `packages`, or keep it beside your DAG files" in error.hint


def test_reference_to_a_module_that_fails_on_import(module_dir: Path) -> None:
    (module_dir / "byo_ref_broken.py").write_text("raise RuntimeError('no config')\n")
    with pytest.raises(ProcessorLoadError, match=r"byo_ref_broken:process': RuntimeError: no config"):
        load_reference("byo_ref_broken:process")


def test_reference_to_a_missing_function(module_dir: Path) -> None:
    (module_dir / "byo_ref_nofunc.py").write_text("def other(file, ctx):\n    pass\n")
    with pytest.raises(ProcessorLoadError) as raised:
        load_reference("byo_ref_nofunc:process")
    assert str(raised.value) == (
        "module 'byo_ref_nofunc' has no callable named 'process'. "
        "Hint: check the function name (reference form is 'package.module:function')"
    )


def test_reference_signature_is_checked() -> None:
    with pytest.raises(ProcessorLoadError) as raised:
        load_reference("json:dumps")
    message = str(raised.value)
    assert message.startswith("processor dumps(obj, *, skipkeys=False")
    assert "cannot be called as dumps(file, ctx)" in message
    assert "too many positional arguments" in message
    assert "(line" not in message


def test_reference_to_a_builtin_without_a_signature_is_left_to_the_call() -> None:
    assert load_reference("builtins:max") is max
