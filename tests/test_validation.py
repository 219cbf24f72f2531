"""Every kind of bad input gets a message naming the field or entry and the fix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoConfigError, ByoPackageError, ByoProcessorError
from airflow_byo.flow_config import parse_runtime_config
from airflow_byo.packages import parse_packages
from airflow_byo.processor import resolve_processor
from airflow_byo.runner.child_process import stage_runtime
from airflow_byo.runtime.contract import OutputError, safe_output_name

# -- packages -------------------------------------------------------------------------------------


def test_seed_string_form_and_lists() -> None:
    assert parse_packages("p1==1.0.1,p2==0.0.2") == ["p1==1.0.1", "p2==0.0.2"]
    assert parse_packages("pandas>=2,<3, requests") == ["pandas<3,>=2", "requests"]
    assert parse_packages(["Unidecode==1.3.8"]) == ["Unidecode==1.3.8"]
    assert parse_packages("") == parse_packages(None) == []


@pytest.mark.parametrize(
    ("packages", "message"),
    [
        (
            "--index-url=http://evil/simple",
            "entry '--index-url=http://evil/simple' is not allowed: pip options",
        ),
        ("-e git+https://x/y", "entry '-e git+https://x/y' is not allowed: pip options"),
        ("-r requirements.txt", "entry '-r requirements.txt' is not allowed: pip options"),
        ("requests; rm -rf /", "is not a valid requirement"),
        ("requests`whoami`", "entry 'requests`whoami`' is not allowed: it contains shell syntax"),
        ("$(curl evil)", "is not allowed: it contains shell syntax"),
        ("./mypkg", "entry './mypkg' is not allowed: local paths cannot be installed"),
        ("/opt/pkg.whl", "entry '/opt/pkg.whl' is not allowed: local paths"),
        ("file:///opt/pkg", "local paths cannot be installed"),
        ("pkg @ https://example.com/pkg.whl", "direct URLs are off by default"),
        ("pkg @ file:///opt/pkg.whl", "local paths cannot be installed"),
        ("p1=1.0.1", "Did you mean 'p1==1.0.1'?"),
        ("a==1,,b==2", "packages: empty entry (two commas in a row, or a trailing comma?)"),
        ("requests==2.31,Requests==2.32", "'Requests' is listed twice"),
    ],
)
def test_bad_package_entries(packages: str, message: str) -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages(packages)
    assert message in str(raised.value)
    assert str(raised.value).startswith("packages: ")


def test_direct_urls_when_allowed_and_non_string_entries() -> None:
    assert parse_packages("pkg @ https://example.com/pkg.whl", allow_direct_urls=True) == [
        "pkg @ https://example.com/pkg.whl"
    ]
    with pytest.raises(ByoPackageError, match=r"entry 3 must be a string like 'pandas==2\.2\.2'"):
        parse_packages(["a", 3])  # type: ignore[list-item]


# -- runtime configuration ------------------------------------------------------------------------


def test_runtime_config_splits_special_keys_from_variables() -> None:
    config = parse_runtime_config(
        '{"custom_code": {"args": [1], "kwargs": {"k": 2}}, "job_config": {"batch_size": 5}, "country": "NL"}'
    )
    assert config.custom_code.args == [1]
    assert config.job_config.batch_size == 5
    assert config.variables == {"country": "NL"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            '{"job_config": {"timeout_seconds": 5,}}',
            "runtime_config is not valid JSON: Expecting property name",
        ),
        ("[1, 2]", "runtime_config must be a JSON object (a dict), got list"),
        ({"job_config": {"timeout": 5}}, "job_config.timeout: unknown key (did you mean 'timeout_seconds'?)"),
        (
            {"job_config": {"timeout_seconds": "soon"}},
            "job_config.timeout_seconds: Input should be a valid number",
        ),
        (
            {"job_config": {"timeout_seconds": -1}},
            "job_config.timeout_seconds: Input should be greater than 0",
        ),
        ({"job_config": {"error_policy": "ignore"}}, "job_config.error_policy: Input should be 'fail_fast'"),
        ({"job_config": {"output_name": "{stem}.{extension}"}}, "unknown placeholder(s) ['extension']"),
        (
            {"job_config": {"max_memory_mb": 10}},
            "job_config.max_memory_mb: Input should be greater than or equal to 64",
        ),
        ({"custom_code": {"args": {"a": 1}}}, "custom_code.args: Input should be a valid list"),
        ({"custom_code": {"kwargs": [1]}}, "custom_code.kwargs: Input should be a valid dictionary"),
        ({"custom_code": {"argz": []}}, "custom_code.argz: unknown key (did you mean 'args'?)"),
    ],
)
def test_bad_runtime_config(value: Any, message: str) -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config(value)
    assert message in str(raised.value)


def test_invalid_json_names_line_and_column() -> None:
    with pytest.raises(ByoConfigError, match=r"at line 3, column 1"):
        parse_runtime_config('{\n  "job_config": {"batch_size": 5}\n')


# -- where the function comes from ----------------------------------------------------------------


def module_level(file: Any, ctx: Any) -> None:
    return None


def test_callables_references_and_code_are_resolved() -> None:
    source = resolve_processor(module_level)
    assert source.function_name == "module_level"
    assert source.code is not None
    assert source.code.startswith("def module_level(file: Any, ctx: Any) -> None:")
    reference = resolve_processor("json:dumps")
    assert (reference.reference, reference.function_name, reference.sys_path) == ("json:dumps", "dumps", [])
    inline = resolve_processor("def handle(file, ctx):\n    pass\n", "handle")
    assert inline.function_name == "handle"


@pytest.mark.parametrize(
    ("processor", "function_name", "message"),
    [
        (
            "def process(file, ctx)\n    pass\n",
            None,
            r"syntax error in processor code: .* \(line 1\)\. Hint: fix the code",
        ),
        (
            "def handle(file, ctx):\n    pass\n",
            None,
            r"no top-level function named 'process' \(functions defined: handle\)",
        ),
        ("def process(file):\n    pass\n", None, r"cannot be called as process\(file, ctx\).*\(line 1\)"),
        ("async def process(file, ctx):\n    pass\n", None, r"processor 'process' is `async def`"),
        ("pkg.mod:func", "other", r"names function 'func' but function_name is 'other'"),
        ("clean_customers", None, r"is neither code nor a reference"),
        ("   ", None, r"processor is empty"),
    ],
)
def test_bad_processors_fail_before_any_file(processor: str, function_name: str | None, message: str) -> None:
    with pytest.raises(ByoProcessorError, match=message):
        resolve_processor(processor, function_name).check([], {})


def test_lambdas_and_closures_are_refused() -> None:
    with pytest.raises(ByoProcessorError, match="lambdas, methods and builtins are not supported"):
        resolve_processor(lambda file, ctx: None)
    limit = 3

    def closure(file: Any, ctx: Any) -> int:
        return limit

    with pytest.raises(ByoProcessorError, match=r"uses variables of an enclosing function \(limit\)"):
        resolve_processor(closure)


def test_signature_is_checked_against_custom_code() -> None:
    source = resolve_processor("def process(file, ctx, factor):\n    pass\n")
    source.check([2], {})
    with pytest.raises(ByoProcessorError, match=r"missing a required argument: 'factor'"):
        source.check([], {})


# -- output names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../../etc/x", "leaves the destination"),
        ("/etc/passwd", "is absolute"),
        ("a/../../b", "leaves the destination"),
        ("bad\nname", "contains a control character"),
        ("C:\\\\x", "contains a control character or a backslash"),
        ("", "must be a non-empty string"),
    ],
)
def test_unsafe_output_names(name: str, message: str) -> None:
    with pytest.raises(OutputError, match=message):
        safe_output_name(name)


def test_safe_output_names_are_normalised() -> None:
    assert safe_output_name("by_day/./2024-01-01.jsonl") == "by_day/2024-01-01.jsonl"


def test_runtime_imports_with_the_standard_library_only(tmp_path: Path) -> None:
    """What runs in the flow's virtualenv must not need Airflow or pydantic."""
    runtime = stage_runtime(str(tmp_path))
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {runtime!r})
        import airflow_byo.runtime.child, airflow_byo.runtime.contract
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("airflow", "pydantic", "sqlalchemy"))
        print(leaked)
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
