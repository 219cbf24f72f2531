"""@task.byo: registered with Airflow, call arguments become custom_code."""

from __future__ import annotations

from datetime import datetime

import pytest
from airflow.sdk import DAG, task

from airflow_byo.exceptions import ByoConfigError, ByoProcessorError


def test_task_byo_is_registered_and_passes_call_arguments() -> None:
    with DAG("decorated", schedule=None, start_date=datetime(2024, 1, 1)):

        @task.byo(source="/in", destination="/out", runtime_config={"job_config": {"timeout_seconds": 9}})
        def clean(file, ctx, factor, *, label="x"):
            return [{"factor": factor, "label": label}]

        output = clean(3, label="y")
    operator = output.operator
    assert operator.custom_operator_name == "@task.byo"
    assert operator.runtime_config == {
        "job_config": {"timeout_seconds": 9},
        "custom_code": {"args": [3], "kwargs": {"label": "y"}},
    }
    assert operator.processor_source.function_name == "clean"
    assert operator.processor_source.code.startswith("def clean(file, ctx, factor")  # decorator dropped


def test_arguments_given_twice_are_refused() -> None:
    with DAG("decorated_twice", schedule=None, start_date=datetime(2024, 1, 1)):

        @task.byo(source="/in", destination="/out", runtime_config={"custom_code": {"args": [1]}})
        def clean(file, ctx, factor):
            return None

        with pytest.raises(
            ByoConfigError, match=r"clean\(\.\.\.\) was called with arguments and runtime_config"
        ):
            clean(2)


def test_a_signature_that_cannot_take_the_arguments_fails_at_parse_time() -> None:
    with DAG("decorated_bad", schedule=None, start_date=datetime(2024, 1, 1)):

        @task.byo(source="/in", destination="/out")
        def clean(file, ctx):
            return None

        with pytest.raises(ByoProcessorError, match="cannot be called as clean"):
            clean(1)
