"""Named runtimes through the flow operator: picked by name, packages overridden, shown in the summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.operators.byo_flow import ByoFlowOperator
from tests.conftest import context

VERSION = "def process(file, ctx):\n    import tabulate\n    return tabulate.__version__\n"


@pytest.fixture
def runtimes_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runtimes.yaml"
    path.write_text(
        "runtimes:\n"
        "  tables:\n"
        "    packages: ['tabulate==0.9.0']\n"
        "    job_config: {timeout_seconds: 42}\n"
        "  local:\n"
        f"    python: {sys.executable}\n"
    )
    monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(path))
    return path


def flow(tmp_path: Path, **kwargs: object) -> ByoFlowOperator:
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "a.txt").write_text("x")
    return ByoFlowOperator(
        task_id="flow",
        source=str(tmp_path / "in"),
        destination=str(tmp_path / "out"),
        track_files=False,
        runtime_config={"job_config": {"output_format": "text"}},
        **kwargs,  # type: ignore[arg-type]
    )


def test_an_unknown_runtime_fails_the_dag_file_listing_the_known_ones(
    tmp_path: Path, runtimes_file: Path
) -> None:
    with pytest.raises(ByoConfigError, match=r"'tabels'.*default, local, tables"):
        flow(tmp_path, processor=VERSION, runtime="tabels")


def test_a_runtime_interpreter_and_its_job_config_defaults(tmp_path: Path, runtimes_file: Path) -> None:
    task = flow(
        tmp_path,
        processor="def process(file, ctx):\n    return str(ctx.job_config['timeout_seconds'])\n",
        runtime="local",
    )
    result = task.execute(context())
    assert (result["runtime"], result["requirements"]) == ("local", [])
    assert (tmp_path / "out" / "a.txt").read_text() == "300.0"  # 'local' sets no defaults


@pytest.mark.venv
def test_the_flows_pin_overrides_the_runtimes_and_the_package_imports_in_the_child(
    tmp_path: Path, runtimes_file: Path, venv_cache: Path
) -> None:
    task = flow(
        tmp_path, processor=VERSION, runtime="tables", packages="Tabulate==0.8.10", venv_cache_path=venv_cache
    )
    result = task.execute(context())
    assert result["runtime"] == "tables"
    assert result["requirements"] == ["Tabulate==0.8.10"]  # one tabulate: the flow's
    assert (tmp_path / "out" / "a.txt").read_text() == "0.8.10"


@pytest.mark.venv
def test_a_runtimes_base_package_imports_in_the_child(
    tmp_path: Path, runtimes_file: Path, venv_cache: Path
) -> None:
    result = flow(tmp_path, processor=VERSION, runtime="tables", venv_cache_path=venv_cache).execute(
        context()
    )
    assert result["requirements"] == ["tabulate==0.9.0"]
    assert (tmp_path / "out" / "a.txt").read_text() == "0.9.0"
