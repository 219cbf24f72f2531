"""`airflow byo test | validate | functions ...` as real subprocesses: output and exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SAMPLE = ROOT / "example_data" / "orders" / "orders_2024-05-02.csv"
UPPER = (
    "def process(file, ctx):\n"
    "    ctx.insight('lines', len(file.open().readlines()))\n"
    "    return file.open().read().upper()\n"
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return os.environ | {"AIRFLOW__BYO__FUNCTION_LIBRARY": str(tmp_path / "library")}


def byo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "byo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_test_runs_code_on_a_sample_and_writes_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    code = tmp_path / "upper.py"
    code.write_text(UPPER)
    result = byo("test", "--code", str(code), "--python", sys.executable, str(SAMPLE), env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "== orders_2024-05-02.jsonl" in result.stdout
    assert "   1005,5,BOOK-001,1,12.50,EUR" in result.stdout
    assert "insight lines: 4" in result.stdout
    assert "nothing was written" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upper.py"]


#: A structlog line as Airflow prints it: ``2024-05-01T12:00:00.123456Z [info     ] ...``.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[\w+\s*\]", re.MULTILINE)


def test_test_prints_the_preview_once_and_log_lines_only_with_verbose(
    tmp_path: Path, env: dict[str, str]
) -> None:
    code = tmp_path / "upper.py"
    code.write_text(UPPER)
    args = ("test", "--code", str(code), "--python", sys.executable, str(SAMPLE))
    quiet = byo(*args, env=env)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stdout.count("1005,5,BOOK-001") == 1
    assert quiet.stdout.count("orders_2024-05-02.jsonl") == 1
    assert not LOG_LINE.search(quiet.stdout + quiet.stderr), quiet.stdout + quiet.stderr
    verbose = byo(*args, "-v", env=env)
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    logged = verbose.stdout + verbose.stderr
    assert LOG_LINE.search(logged)
    assert "Test mode: running the processor on" in logged


def test_test_fails_with_the_functions_error(tmp_path: Path, env: dict[str, str]) -> None:
    code = tmp_path / "broken.py"
    code.write_text("def process(file, ctx):\n    raise ValueError('bad header')\n")
    result = byo("test", "--code", str(code), "--python", sys.executable, str(SAMPLE), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: test run failed on ")
    assert "ValueError: bad header" in result.stderr
    assert "Traceback (most recent call last)" not in result.stderr.split("error: test run failed")[1]
    assert result.stderr.rstrip().endswith("(-v shows the log, with the processor's traceback)")


def test_functions_save_list_show_use_delete(tmp_path: Path, env: dict[str, str]) -> None:
    code = tmp_path / "upper.py"
    code.write_text(UPPER)
    assert byo("functions", "save", "upper", "--code", str(code), env=env).stdout.strip() == "saved upper@1"
    # The same code, function, packages and runtime is the same version, whatever the description.
    again = byo("functions", "save", "upper", "--code", str(code), "--description", "v2", env=env)
    assert again.stdout.strip() == "unchanged, still upper@1"
    code.write_text(UPPER.replace("upper()", "upper()  # v2"))
    assert (
        byo("functions", "save", "upper", "--code", str(code), "--description", "v2", env=env).stdout.strip()
        == "saved upper@2"
    )
    assert "upper" in byo("functions", "list", env=env).stdout
    assert "v1, v2" in byo("functions", "list", env=env).stdout
    shown = byo("functions", "show", "upper@2", env=env).stdout
    assert shown.startswith("upper@2  function process  by ")
    assert "description: v2" in shown

    result = byo("test", "--function", "upper@1", "--python", sys.executable, str(SAMPLE), env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1006,6,LAMP-7,1,45.90,EUR" in result.stdout

    specs = tmp_path / "flows"
    specs.mkdir()
    (specs / "uses.yaml").write_text(
        "name: uses\nsource: {type: local, path: /in}\nprocessing: {function: upper@1}\n"
        "destination: {type: local, path: /out}\n"
    )
    refused = byo("functions", "delete", "upper@1", "--specs", str(specs), env=env)
    assert refused.returncode == 1
    assert "error: upper@1 is used by" in refused.stderr
    assert (
        byo("functions", "delete", "upper@2", "--specs", str(specs), env=env).stdout.strip()
        == "deleted upper@2"
    )

    bad = tmp_path / "bad.py"
    bad.write_text("def process(file)\n")
    result = byo("functions", "save", "bad", "--code", str(bad), env=env)
    assert result.returncode == 1
    assert "error: syntax error in processor code" in result.stderr


def test_validate_reports_every_problem(tmp_path: Path, env: dict[str, str]) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "good.yaml").write_text(
        "name: good\nsource: {type: local, path: /in}\nprocessing: {code: 'def process(file, ctx): pass'}\n"
        "destination: {type: local, path: /out}\n"
    )
    (flows / "bad.yaml").write_text("name: bad\nsorce: {type: local, path: /in}\n")
    result = byo("validate", str(flows), env=env)
    assert result.returncode == 1
    assert f"ok      {flows / 'good.yaml'} (good)" in result.stdout
    assert f"INVALID {flows / 'bad.yaml'}:" in result.stdout
    assert (
        f"{flows / 'bad.yaml'}:2: sorce: Extra inputs are not permitted. Fix: did you mean 'source'?"
        in result.stdout
    )
    assert f"{flows / 'bad.yaml'}:1: source: Field required. Fix: add it" in result.stdout
    assert result.stderr.strip().endswith("error: 1 of 2 spec file(s) invalid")
    ok = byo("validate", str(ROOT / "dags_examples" / "flows"), env=env)
    assert ok.returncode == 0
    assert ok.stdout.strip().endswith("spec file(s) valid")
