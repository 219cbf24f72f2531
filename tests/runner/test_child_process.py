"""
One child process seen from the worker (airflow_byo.runner.child_process): its start-up and
environment, the timeout, crashes, the user's output relayed to the task log, and a killed worker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoProcessorError
from airflow_byo.flow import FlowEnvironment, ResolvedFlow
from airflow_byo.runner.child_environment import stage_runtime
from airflow_byo.runner.flow_runner import FlowRunner
from airflow_byo.storage import TEMP_MARKER, Location
from tests.conftest import RecordingLogger, assert_no_temporaries, make_files, published, run_flow


def test_hung_function_is_killed_at_the_timeout_and_the_run_goes_on(tmp_path: Path) -> None:
    code = """
        import time
        def process(file, ctx):
            if file.name == "hang.txt":
                time.sleep(3600)
            return "done"
    """
    summary, out = run_flow(
        tmp_path,
        code,
        {"a.txt": "", "hang.txt": "", "z.txt": ""},
        {"job_config": {"timeout_seconds": 0.5, "output_format": "text"}},
    )
    [failed] = summary.failed
    assert failed.url.endswith("hang.txt")
    assert failed.error_type == "Timeout"
    assert "job_config.timeout_seconds=0.5s" in failed.error
    assert published(out) == {"a.txt": "done", "z.txt": "done"}
    assert_no_temporaries(out)


def test_child_crash_is_reported_and_a_fresh_child_continues(tmp_path: Path) -> None:
    code = """
        import os, signal
        def process(file, ctx):
            if file.name == "crash.txt":
                os.kill(os.getpid(), signal.SIGKILL)
            return "alive"
    """
    summary, out = run_flow(
        tmp_path, code, {"crash.txt": "", "next.txt": ""}, {"job_config": {"output_format": "text"}}
    )
    [failed] = summary.failed
    assert failed.error_type == "ChildDied"
    assert "signal SIGKILL" in failed.error
    assert published(out) == {"next.txt": "alive"}


def test_child_environment_holds_no_airflow_settings_or_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-password-value"
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "fernet-" + secret)
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"postgresql://airflow:{secret}@db/airflow")
    monkeypatch.setenv("AIRFLOW_CONN_MY_SFTP", f"sftp://user:{secret}@host")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    code = """
        import os
        def process(file, ctx):
            return dict(os.environ)
    """
    summary, out = run_flow(tmp_path, code, {"env.txt": ""})
    assert summary.failed == []
    environment = json.loads(published(out)["env.jsonl"])
    assert environment  # PATH and friends are there
    assert not [key for key in environment if key.startswith("AIRFLOW")]
    assert secret not in json.dumps(environment)


def test_prints_and_logs_of_the_function_reach_the_task_log(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            print("printed for", file.name)
            ctx.log.warning("logged for %s", file.name)
            ctx.notify("heads up", level="warning", rows=3)
    """
    log = RecordingLogger()
    summary, _ = run_flow(tmp_path, code, {"a.txt": ""}, log=log)
    assert "[processor] printed for a.txt" in log.text
    assert "[processor] WARNING logged for a.txt" in log.text
    assert "heads up {'rows': 3}" in log.text
    assert summary.tally.notifications == 1


def test_load_error_in_the_child_fails_before_any_file(tmp_path: Path) -> None:
    code = """
        import module_that_is_not_installed
        def process(file, ctx):
            return "never"
    """
    with pytest.raises(ByoProcessorError, match="No module named 'module_that_is_not_installed'") as raised:
        run_flow(tmp_path, code, {"a.txt": ""})
    assert "(line 2)" in str(raised.value)
    assert "missing from `packages`" in str(raised.value)
    assert published(tmp_path / "out") == {}


def test_missing_interpreter_is_a_clear_error(tmp_path: Path) -> None:
    runner = FlowRunner(
        flow=ResolvedFlow.resolve("def process(file, ctx):\n    pass\n"),
        environment=FlowEnvironment(str(tmp_path / "no-such-python")),
        log=RecordingLogger(),
    )
    (tmp_path / "in").mkdir()
    source = Location(str(tmp_path / "in"))
    with pytest.raises(ByoProcessorError, match=r"cannot start the processor's interpreter .*no-such-python"):
        runner.run(source, Location(str(tmp_path / "out")), [])


_KILLED_WORKER = """
import sys, logging
from airflow_byo.runner.flow_runner import FlowRunner
from airflow_byo.runner.preview import preview_file
from airflow_byo.flow import FlowEnvironment, ResolvedFlow
from airflow_byo.storage import Location
code = '''
import os, time
def process(file, ctx):
    open(ctx.variables["pid_file"], "w").write(str(os.getpid()))
    time.sleep(3600)
'''
source = Location(sys.argv[1])
runner = FlowRunner(
    flow=ResolvedFlow.resolve(code, runtime_config={"pid_file": sys.argv[3]}),
    environment=FlowEnvironment(sys.executable),
    log=logging.getLogger("worker"),
)
runner.run(source, Location(sys.argv[2]), source.list_files())
"""


def test_killed_worker_takes_its_child_along_and_the_next_run_sweeps_its_scratch(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from airflow_byo.scratch import sweep

    make_files(tmp_path / "in", {"a.txt": "x"})
    pid_file = tmp_path / "child.pid"
    # Unsandboxed: the child writes its pid where the test reads it (PR_SET_PDEATHSIG at work). The
    # sandboxed child dies with its worker through bubblewrap's --die-with-parent (test_sandbox.py).
    worker = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WORKER, str(tmp_path / "in"), str(tmp_path / "out"), str(pid_file)],
        env={**os.environ, "AIRFLOW__BYO__SANDBOX": "off"},
    )
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    # Outputs are staged next to a local destination (never inside it), on the same file system.
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(f"{TEMP_MARKER}outputs-")]
    assert leftovers, "the run should have an output scratch directory while it works"

    worker.send_signal(signal.SIGKILL)
    worker.wait()
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail("the child outlived its killed worker")

    assert all(p.exists() for p in leftovers)  # SIGKILL: nobody could clean up ...
    assert sorted(sweep(str(tmp_path))) == sorted(str(p) for p in leftovers)  # ... the next run does
    assert published(tmp_path / "out") == {}


def test_staged_runtime_holds_only_the_runtime(tmp_path: Path) -> None:
    staged = Path(stage_runtime(str(tmp_path)))
    assert sorted(p.name for p in (staged / "airflow_byo").iterdir()) == ["__init__.py", "runtime"]
    names = {p.name for p in (staged / "airflow_byo" / "runtime").iterdir()}
    assert {"__init__.py", "child.py", "contract.py", "function_loader.py", "protocol.py"} <= names


def test_the_staged_runtime_is_imported_from_its_bytecode_not_compiled(tmp_path: Path) -> None:
    """The child of this interpreter's version loads every runtime module from the shipped .pyc."""
    import subprocess

    staged = Path(stage_runtime(str(tmp_path)))
    modules = sorted(p.stem for p in (staged / "airflow_byo" / "runtime").glob("*.py"))
    verbose = subprocess.run(
        [
            sys.executable,
            "-I",
            "-v",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import airflow_byo.runtime.child",
            staged,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    cache = staged / "airflow_byo" / "runtime" / "__pycache__"
    tag = sys.implementation.cache_tag
    loaded = [m for m in modules if f"code object from '{cache}/{m}.{tag}.pyc'" in verbose]
    assert loaded == modules
