"""Runtime variables & configuration (airflow_byo.runtime_config): parsing, defaults, every error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from airflow_byo.exceptions import ByoConfigError, ByoError
from airflow_byo.runtime_config import JobConfig, RuntimeConfig, parse_runtime_config

# -- accepted input -------------------------------------------------------------------------------


@pytest.mark.parametrize("empty", [None, "", {}])
def test_empty_config_gives_defaults(empty: Any) -> None:
    config = parse_runtime_config(empty)
    assert config == RuntimeConfig()
    assert config.custom_code.args == []
    assert config.custom_code.kwargs == {}
    assert config.variables == {}
    assert config.job_config == JobConfig()


def test_job_config_defaults() -> None:
    job = JobConfig()
    assert job.timeout_seconds == 300.0
    assert job.batch_size == 1000
    assert job.error_policy == "continue"
    assert job.retries == 0
    assert job.on_change == "reprocess"
    assert job.output_format == "jsonl"
    assert job.output_name == "{stem}.{ext}"
    assert job.max_memory_mb == 2048


def test_json_string_and_dict_give_the_same_config() -> None:
    value = {
        "custom_code": {"args": [1, "two"], "kwargs": {"factor": 2.5}},
        "job_config": {"timeout_seconds": 60, "batch_size": 10, "error_policy": "quarantine"},
        "country": "NL",
        "thresholds": {"low": 1},
    }
    from_dict = parse_runtime_config(value)
    from_json = parse_runtime_config(json.dumps(value))
    assert from_dict == from_json
    assert from_dict.custom_code.args == [1, "two"]
    assert from_dict.custom_code.kwargs == {"factor": 2.5}
    assert from_dict.job_config.timeout_seconds == 60.0
    assert from_dict.job_config.batch_size == 10
    assert from_dict.job_config.error_policy == "quarantine"
    assert from_json.variables == {"country": "NL", "thresholds": {"low": 1}}


def test_other_keys_pass_through_as_variables() -> None:
    config = parse_runtime_config(
        {"country": "NL", "limits": {"rows": [1, 2]}, "flag": None, "variables": {"nested": True}}
    )
    assert config.variables == {
        "country": "NL",
        "limits": {"rows": [1, 2]},
        "flag": None,
        "variables": {"nested": True},
    }
    assert config.job_config == JobConfig()


def test_an_already_parsed_config_is_returned_as_is() -> None:
    config = parse_runtime_config({"job_config": {"retries": 2}})
    assert parse_runtime_config(config) is config


def test_models_are_frozen() -> None:
    config = parse_runtime_config({"job_config": {"retries": 1}})
    with pytest.raises(ValidationError, match="frozen"):
        config.job_config.retries = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "output_name",
    ["{stem}.{ext}", "{rel_dir}/{stem}.{ext}", "out/{name}", "{stem}{suffix}.gz", "fixed.jsonl"],
)
def test_known_output_name_placeholders(output_name: str) -> None:
    assert parse_runtime_config({"job_config": {"output_name": output_name}}).job_config.output_name == (
        output_name
    )


# -- invalid JSON and non-objects -----------------------------------------------------------------


def test_invalid_json_names_line_and_column() -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config('{\n  "job_config": {"batch_size": 5,}\n}')
    message = str(raised.value)
    assert message.startswith("runtime_config is not valid JSON: Expecting property name")
    assert "at line 2, column 34" in message
    assert 'It must be a JSON object such as {"job_config": {"timeout_seconds": 60}}' in message


def test_unterminated_json_names_the_end() -> None:
    with pytest.raises(ByoConfigError, match=r"not valid JSON: .* at line 3, column 1\."):
        parse_runtime_config('{\n  "job_config": {"batch_size": 5}\n')


def test_the_source_name_is_used_in_messages() -> None:
    with pytest.raises(ByoConfigError, match=r"^flows/orders\.yaml: config is not valid JSON"):
        parse_runtime_config("{oops", source="flows/orders.yaml: config")
    with pytest.raises(ByoConfigError, match=r"^invalid my_config:\n  job_config\.retries"):
        parse_runtime_config({"job_config": {"retries": -1}}, source="my_config")


@pytest.mark.parametrize(
    ("value", "type_name"),
    [("[1, 2]", "list"), ("null", "NoneType"), ('"text"', "str"), ("42", "int"), ([1], "list")],
)
def test_non_object_json_is_rejected(value: Any, type_name: str) -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config(value)
    message = str(raised.value)
    assert message.startswith(f"runtime_config must be a JSON object (a dict), got {type_name}: ")
    assert '{"custom_code": {"args": [1]}, "job_config": {"batch_size": 100}}' in message


# -- unknown keys and wrong types -----------------------------------------------------------------


def test_unknown_job_config_key_suggests_the_right_one() -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config({"job_config": {"timeout": 5}})
    message = str(raised.value)
    assert message.startswith("invalid runtime_config:\n")
    assert "  job_config.timeout: unknown key (did you mean 'timeout_seconds'?); allowed keys: " in message
    for key in JobConfig.model_fields:
        assert key in message


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config({"job_config": {"zzzz": 1}})
    message = str(raised.value)
    assert "job_config.zzzz: unknown key; allowed keys: timeout_seconds, batch_size" in message
    assert "did you mean" not in message


def test_unknown_custom_code_key_suggests_the_right_one() -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config({"custom_code": {"kwarg": {}}})
    assert "custom_code.kwarg: unknown key (did you mean 'kwargs'?); allowed keys: args, kwargs" in str(
        raised.value
    )
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config({"custom_code": {"argz": []}})
    assert "custom_code.argz: unknown key (did you mean 'args'?); allowed keys: args, kwargs" in str(
        raised.value
    )


@pytest.mark.parametrize(
    ("job_config", "line"),
    [
        (
            {"timeout_seconds": "soon"},
            "job_config.timeout_seconds: Input should be a valid number, unable to parse string as a "
            "number (got 'soon')",
        ),
        ({"timeout_seconds": 0}, "job_config.timeout_seconds: Input should be greater than 0 (got 0)"),
        ({"timeout_seconds": -1}, "job_config.timeout_seconds: Input should be greater than 0 (got -1)"),
        (
            {"batch_size": 1.5},
            "job_config.batch_size: Input should be a valid integer, got a number with a fractional part "
            "(got 1.5)",
        ),
        ({"retries": 11}, "job_config.retries: Input should be less than or equal to 10 (got 11)"),
        ({"error_policy": "ignore"}, "job_config.error_policy: Input should be 'fail_fast', 'continue' or"),
        ({"output_format": "xml"}, "job_config.output_format: Input should be 'jsonl', 'json', 'csv'"),
        ({"max_memory_mb": 10}, "job_config.max_memory_mb: Input should be greater than or equal to 64"),
        ({"transfer_concurrency": 65}, "job_config.transfer_concurrency: Input should be less than or equal"),
    ],
)
def test_wrong_job_config_values_name_the_key_path(job_config: dict[str, Any], line: str) -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config({"job_config": job_config})
    assert f"\n  {line}" in str(raised.value)


def test_every_error_is_listed() -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config({"job_config": {"timeout_seconds": 0, "batch_size": 0}})
    lines = str(raised.value).splitlines()
    assert lines[0] == "invalid runtime_config:"
    assert lines[1].startswith("  job_config.timeout_seconds: ")
    assert lines[2].startswith("  job_config.batch_size: ")


def test_max_memory_mb_may_be_null() -> None:
    assert parse_runtime_config({"job_config": {"max_memory_mb": None}}).job_config.max_memory_mb is None


def test_job_config_that_is_not_an_object() -> None:
    with pytest.raises(ByoConfigError, match=r"job_config: Input should be a valid dictionary .*\(got 5\)"):
        parse_runtime_config({"job_config": 5})


# -- output_name placeholders ---------------------------------------------------------------------


def test_unknown_output_name_placeholder() -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config({"job_config": {"output_name": "{stem}.{extension}"}})
    message = str(raised.value)
    assert "job_config.output_name: " in message
    assert "unknown placeholder(s) ['extension']; allowed: ['ext', 'name', 'rel_dir', 'stem', 'suffix']" in (
        message
    )
    assert "(got '{stem}.{extension}')" in message


def test_malformed_output_name_template() -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config({"job_config": {"output_name": "{stem"}})
    message = str(raised.value)
    assert "job_config.output_name: " in message
    assert "expected '}' before end of string; use placeholders like {stem}.{ext}" in message


def test_positional_output_name_placeholder_is_unknown() -> None:
    with pytest.raises(ByoConfigError, match=r"job_config\.output_name: .*unknown placeholder\(s\) \[''\]"):
        parse_runtime_config({"job_config": {"output_name": "{}.jsonl"}})


@pytest.mark.parametrize("output_name", ["../{stem}.{ext}", "/tmp/{name}"])
def test_output_name_outside_the_destination_is_rejected_up_front(output_name: str) -> None:
    with pytest.raises(ByoConfigError, match=r"job_config\.output_name: "):
        parse_runtime_config({"job_config": {"output_name": output_name}})


# -- custom_code ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("custom_code", "line"),
    [
        ({"args": {"a": 1}}, "custom_code.args: Input should be a valid list (got {'a': 1})"),
        ({"args": "abc"}, "custom_code.args: Input should be a valid list (got 'abc')"),
        ({"kwargs": [1]}, "custom_code.kwargs: Input should be a valid dictionary (got [1])"),
        ({"kwargs": "k=v"}, "custom_code.kwargs: Input should be a valid dictionary (got 'k=v')"),
        ([1], "custom_code: Input should be a valid dictionary or instance of CustomCode (got [1])"),
    ],
)
def test_custom_code_types(custom_code: Any, line: str) -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config({"custom_code": custom_code})
    assert f"\n  {line}" in str(raised.value)


def test_config_errors_belong_to_the_project_hierarchy() -> None:
    with pytest.raises(ByoError):
        parse_runtime_config("[]")


# -- strict types (issue 13) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_config", "line"),
    [
        (
            {"timeout_seconds": True},
            "job_config.timeout_seconds: must be a JSON number such as 60 or 2.5, not a boolean (got True)",
        ),
        (
            {"lease_seconds": False},
            "job_config.lease_seconds: must be a JSON number such as 60 or 2.5, not a boolean (got False)",
        ),
        (
            {"timeout_seconds": "60"},
            "job_config.timeout_seconds: must be a JSON number such as 60 or 2.5, not a string (got '60')",
        ),
        (
            {"batch_size": True},
            "job_config.batch_size: must be a JSON whole number such as 100, not a boolean (got True)",
        ),
        (
            {"retries": "2"},
            "job_config.retries: must be a JSON whole number such as 100, not a string (got '2')",
        ),
        (
            {"preview_lines": 10.0},
            "job_config.preview_lines: must be a JSON whole number such as 100, not a number with a "
            "decimal point (got 10.0)",
        ),
        (
            {"max_memory_mb": True},
            "job_config.max_memory_mb: must be a JSON whole number such as 100, not a boolean (got True)",
        ),
        (
            {"cpu_seconds": "1e3"},
            "job_config.cpu_seconds: must be a JSON number such as 60 or 2.5, not a string (got '1e3')",
        ),
        ({"network": 1}, "job_config.network: must be true or false, not a number (got 1)"),
        ({"network": "yes"}, "job_config.network: must be true or false, not a string (got 'yes')"),
        ({"network": "true"}, "job_config.network: must be true or false, not a string (got 'true')"),
        ({"network": None}, "job_config.network: Input should be a valid boolean (got None)"),
    ],
)
def test_numbers_and_booleans_are_strict(job_config: dict[str, Any], line: str) -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config({"job_config": job_config})
    assert str(raised.value) == f"invalid runtime_config:\n  {line}"


@pytest.mark.parametrize(
    ("workers", "given"),
    [
        ("two", "a string (got 'two')"),
        ("2", "a string (got '2')"),
        (True, "a boolean (got True)"),
        (0, "a number below 1 (got 0)"),
        (2.0, "a number with a decimal point (got 2.0)"),
    ],
)
def test_workers_is_auto_or_a_whole_number(workers: Any, given: str) -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config({"job_config": {"workers": workers}})
    assert str(raised.value) == (
        'invalid runtime_config:\n  job_config.workers: must be "auto" or a JSON whole number of '
        f"at least 1 such as 4, not {given}"
    )
    assert parse_runtime_config({"job_config": {"workers": 3}}).job_config.workers == 3
    assert parse_runtime_config({}).job_config.workers == "auto"


def test_strict_types_hold_for_json_text_too() -> None:
    with pytest.raises(ByoConfigError) as raised:
        parse_runtime_config('{"job_config": {"timeout_seconds": true, "network": 0}}')
    assert str(raised.value).splitlines()[1:] == [
        "  job_config.timeout_seconds: must be a JSON number such as 60 or 2.5, not a boolean (got True)",
        "  job_config.network: must be true or false, not a number (got 0)",
    ]


def test_json_numbers_and_booleans_of_the_right_type_pass() -> None:
    job = parse_runtime_config(
        '{"job_config": {"timeout_seconds": 60, "cpu_seconds": 2.5, "batch_size": 10, '
        '"max_memory_mb": null, "network": true}}'
    ).job_config
    assert (job.timeout_seconds, job.cpu_seconds, job.batch_size, job.max_memory_mb, job.network) == (
        60.0,
        2.5,
        10,
        None,
        True,
    )
    assert isinstance(job.timeout_seconds, float)  # an integer is a number
