"""The child pool: what every child starts with."""

from __future__ import annotations

import json

from airflow_byo.flow_config import parse_runtime_config
from airflow_byo.processor import resolve_processor
from airflow_byo.runner.child_pool import init_request


def test_init_request_carries_what_the_child_needs() -> None:
    config = parse_runtime_config(
        {"custom_code": {"args": [1], "kwargs": {"k": "v"}}, "job_config": {"batch_size": 7}, "x": 1}
    )
    init = init_request(resolve_processor("pkg.mod:func"), config)
    assert init["op"] == "init"
    assert {key: init[key] for key in ("code", "reference", "function_name", "sys_path")} == {
        "code": None,
        "reference": "pkg.mod:func",
        "function_name": "func",
        "sys_path": [],
    }
    assert init["args"] == [1]
    assert init["kwargs"] == {"k": "v"}
    assert init["variables"] == {"x": 1}
    assert init["job_config"]["batch_size"] == 7
    assert init["job_config"]["output_name"] == "{stem}.{ext}"
    json.dumps(init)  # it crosses a process boundary as JSON
