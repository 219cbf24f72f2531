"""
The ``byo`` console script (airflow_byo.cli.byo_script): ``byo test`` of a local sample without
importing Airflow, its output, its arguments kept equal to ``airflow byo test``'s, and every other
command handed to ``airflow byo``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_byo import provider_config
from airflow_byo.cli import byo_script, warm_environments
from tests.cli.test_commands import LOG_LINE, SAMPLE, UPPER

BYO = Path(sys.executable).parent / "byo"

#: Runs the script's main() in a fresh interpreter and reports whether Airflow was imported.
PROBE = (
    "import sys; from airflow_byo.cli.byo_script import main; rc = main(sys.argv[1:]); "
    "print('AIRFLOW IMPORTED' if 'airflow' in sys.modules else 'NO AIRFLOW'); sys.exit(rc)"
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return os.environ | {"AIRFLOW__BYO__FUNCTION_LIBRARY": str(tmp_path / "library")}


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_byo_test_prints_the_preview_once_without_log_lines(tmp_path: Path, env: dict[str, str]) -> None:
    code = tmp_path / "upper.py"
    code.write_text(UPPER)
    args = ["test", "--code", str(code), "--python", sys.executable, str(SAMPLE)]
    quiet = run([str(BYO), *args], env)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stdout.count("1005,5,BOOK-001") == 1
    assert quiet.stdout.splitlines()[0].startswith("== orders_2024-05-02.jsonl (")
    assert "insight lines: 4" in quiet.stdout
    assert quiet.stdout.rstrip().endswith("nothing was written")
    assert quiet.stderr == ""
    assert not LOG_LINE.search(quiet.stdout)
    verbose = run([str(BYO), *args, "-v"], env)
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert "INFO Processor loaded in Python" in verbose.stderr
    assert verbose.stdout == quiet.stdout.replace(
        quiet.stdout.splitlines()[-1], verbose.stdout.splitlines()[-1]
    )  # the same text; only the timing in the last line differs


def test_byo_test_of_a_local_file_does_not_import_airflow(tmp_path: Path, env: dict[str, str]) -> None:
    code = tmp_path / "upper.py"
    code.write_text(UPPER)
    args = ["test", "--code", str(code), "--python", sys.executable, str(SAMPLE)]
    result = run([sys.executable, "-c", PROBE, *args], env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("NO AIRFLOW")
    broken = tmp_path / "broken.py"
    broken.write_text("def process(file, ctx):\n    raise ValueError('bad header')\n")
    failed = run(
        [sys.executable, "-c", PROBE, "test", "--code", str(broken), "--python", sys.executable, str(SAMPLE)],
        env,
    )
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        f"error: test run failed on {SAMPLE}: ValueError: bad header "
        "(-v shows the log, with the processor's traceback)"
    )
    assert failed.stdout.strip() == "NO AIRFLOW"


def test_a_remote_sample_goes_through_airflow(tmp_path: Path, env: dict[str, str]) -> None:
    code = tmp_path / "upper.py"
    code.write_text(UPPER)
    args = ["test", "--code", str(code), "--python", sys.executable, "s3://no-such-bucket/a.csv"]
    result = run([sys.executable, "-c", PROBE, *args, "--conn-id", "byo_no_such_connection"], env)
    assert result.returncode == 1
    assert "byo_no_such_connection" in result.stderr  # the connection lookup is Airflow's
    assert "AIRFLOW IMPORTED" in result.stdout


@pytest.mark.venv
def test_a_warm_environment_is_reused_without_airflow(
    tmp_path: Path, env: dict[str, str], venv_cache: Path
) -> None:
    code = tmp_path / "upper.py"
    code.write_text(UPPER)
    env = env | {"AIRFLOW__BYO__VENV_CACHE_PATH": str(venv_cache / "byo-script")}
    args = ["test", "--code", str(code), "--packages", "six==1.16.0", str(SAMPLE)]
    cold = run([sys.executable, "-c", PROBE, *args], env)
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert "AIRFLOW IMPORTED" in cold.stdout  # built through the standard provider
    assert not LOG_LINE.search(cold.stdout + cold.stderr), cold.stdout + cold.stderr
    warm = run([sys.executable, "-c", PROBE, *args], env)
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert warm.stdout.count("1005,5,BOOK-001") == 1
    assert warm.stdout.rstrip().endswith("NO AIRFLOW")


def test_other_commands_are_airflow_byo_commands(env: dict[str, str]) -> None:
    ours = run([str(BYO), "functions", "list"], env)
    theirs = run([str(Path(sys.executable).parent / "airflow"), "byo", "functions", "list"], env)
    assert ours.returncode == theirs.returncode == 0, ours.stderr[-2000:]
    assert ours.stdout == theirs.stdout
    assert "(empty library)" in ours.stdout
    missing = run([str(BYO), "ledger"], env)
    assert missing.returncode == 2  # argparse: a group needs a subcommand


def test_byo_test_takes_the_arguments_of_airflow_byo_test() -> None:
    from airflow_byo.cli.definition import get_byo_cli_commands

    [group] = get_byo_cli_commands()
    [airflow_test] = [c for c in group.subcommands if c.name == "test"]
    theirs = {flag for arg in airflow_test.args for flag in arg.flags}
    ours = {
        flag
        for action in byo_script.test_parser()._actions
        for flag in action.option_strings or [action.dest]
    }
    assert ours - {"-h", "--help"} == theirs


# -- what it reads instead of Airflow -------------------------------------------------------------


def test_standalone_settings_read_like_airflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "airflow.cfg").write_text("[byo]\nsandbox = off\nruntimes_cmd = cat /x\n")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONFIG", raising=False)
    for name in ("SANDBOX", "RUNTIMES", "MAX_SPEC_BYTES", "VENV_CACHE_PATH"):
        monkeypatch.delenv(f"AIRFLOW__BYO__{name}", raising=False)
    monkeypatch.setenv("AIRFLOW__BYO__VENV_CACHE_PATH", "/envs")
    read = provider_config._standalone_setting
    assert read("sandbox") == "off"  # airflow.cfg
    assert read("venv_cache_path") == "/envs"  # the environment wins
    assert read("max_spec_bytes") == "1048576"  # the provider's default
    assert read("runtimes") is None  # a _cmd option: only Airflow can run it
    monkeypatch.setenv("AIRFLOW__BYO__SANDBOX_SECRET", "sandbox/mode")
    monkeypatch.delenv("AIRFLOW__BYO__SANDBOX", raising=False)
    assert read("sandbox") is None


def test_a_noted_environment_is_reused_only_while_it_is_the_same(tmp_path: Path) -> None:
    venv = tmp_path / "venv-abc"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.symlink_to(sys.executable)
    marker = venv / "install_complete_marker.json"
    marker.write_text(json.dumps({"requirements_list": ["six==1.16.0"]}))
    assert warm_environments.lookup(tmp_path, ["six==1.16.0"]) is None  # never noted
    warm_environments.remember(tmp_path, ["six==1.16.0"], str(python))
    assert warm_environments.lookup(tmp_path, ["six==1.16.0"]) == str(python)
    assert warm_environments.lookup(tmp_path, ["six==1.17.0"]) is None
    marker.write_text(json.dumps({"requirements_list": ["six==1.16.0"], "cache_key": "new"}))
    assert warm_environments.lookup(tmp_path, ["six==1.16.0"]) is None  # rebuilt by the provider
    marker.unlink()
    assert warm_environments.lookup(tmp_path, ["six==1.16.0"]) is None  # removed
