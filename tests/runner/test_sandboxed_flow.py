"""
The sandbox through the path users run: a hostile processor in a real ByoFlowOperator task.

Each processor tries one escape and publishes whatever it finds through every channel it has --
its output, ``ctx.insight``, ``ctx.notify`` (to a file channel) and ``print`` (the task log). The
worker's secrets (a connection password in its environment, the Fernet key in ``airflow.cfg``, a
row of the metadata DB) must appear in none of them. The same flows with ``[byo] sandbox = off``
prove that the attacks are real. (The sandbox module's own tests also run every escape as an
ordinary user: tests/runner/test_sandbox.py.)
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoConfigError, ByoFilesFailedError
from airflow_byo.operators.byo_flow import ByoFlowOperator
from airflow_byo.runner import sandbox_mode
from tests.conftest import RecordingLogger, context
from tests.runner.sandbox_fixtures import CANARY

pytest_plugins = ["tests.runner.sandbox_fixtures"]  # worker_secrets, tcp_server

pytestmark = pytest.mark.skipif(
    not sandbox_mode.bubblewrap_status()[0],
    reason=f"bubblewrap cannot work here: {sandbox_mode.bubblewrap_status()[1]}",
)

#: Reads every secret it can reach and hands it to every channel it has.
SNOOP = """
import glob, os, sqlite3

def _grab(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<{type(exc).__name__}>"

def process(file, ctx):
    loot = {"parent_environ": _grab(f"/proc/{os.getppid()}/environ")}
    for path in glob.glob("/proc/[0-9]*/environ"):
        loot[path] = _grab(path)
    loot["airflow_cfg"] = _grab(ctx.variables["airflow_cfg"])
    try:
        db = sqlite3.connect(ctx.variables["metadata_db"])
        loot["metadata_db"] = str(db.execute("select * from secret").fetchall())
    except Exception as exc:
        loot["metadata_db"] = f"<{type(exc).__name__}>"
    loot["own_environ"] = dict(os.environ)
    text = repr(loot)
    print(text)
    # A busy host has many processes: keep the insight and notification under their caps.
    ctx.insight("loot", text[:200_000])
    ctx.notify(text[:30_000])
    return text
"""

#: Connects to a TCP server of the test on the worker's loopback.
CONNECT = """
import socket

def process(file, ctx):
    try:
        with socket.create_connection(("127.0.0.1", ctx.variables["port"]), timeout=5) as conn:
            return conn.recv(100).decode()
    except OSError as exc:
        raise RuntimeError(f"no connection: {exc}") from None
"""

#: Leaves a daemon behind (setsid + double fork) whose command line carries a marker.
DAEMON = """
import os, sys

def process(file, ctx):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            argv = [sys.executable, "-c", "import time; time.sleep(120)", ctx.variables["marker"]]
            os.execv(sys.executable, argv)
        os._exit(0)
    os.wait()
    return "daemon started"
"""

#: Forks a sleeper holding the pipes, then dies.
FORK_AND_DIE = """
import os, time

def process(file, ctx):
    if os.fork() == 0:
        time.sleep(120)
        os._exit(0)
    os._exit(3)
"""

#: Forges the protocol's done message with an output outside the destination.
FORGE = """
import gc

def process(file, ctx):
    channel = next(o for o in gc.get_objects() if type(o).__name__ == "_Channel")
    staged = ctx._output_prefix + "-00000"
    with open(staged, "w") as handle:
        handle.write("forged")
    forged = {"name": "../outside/x.txt", "size": 6, "records": None}
    done = {"ev": "done", "seq": 0, "seconds": 0.0, "outputs": [forged], "insights": {}, "counters": {}}
    channel.send(done)
    return None
"""

#: Writes one output larger than job_config.max_output_mb.
HUGE = """
def process(file, ctx):
    with ctx.output("huge.bin", "wb") as handle:
        for _ in range(3):
            handle.write(b"x" * (1024 * 1024))
"""


def run_flow(
    tmp_path: Path,
    code: str,
    variables: dict[str, Any] | None = None,
    job: dict[str, Any] | None = None,
    *,
    files: dict[str, str] | None = None,
    task_id: str = "hostile",
    **operator: Any,
) -> tuple[dict[str, Any], Path, RecordingLogger]:
    """
    Run ``code`` over ``files`` (default: one ``a.txt``) through the operator, in the worker's
    Python unless ``operator`` names a runtime; returns (XCom summary, out dir, log).
    """
    source = tmp_path / "in"
    source.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {"a.txt": "hello"}).items():
        (source / name).write_text(text)
    notes = tmp_path / "notifications.jsonl"
    if "runtime" not in operator:
        operator["python_interpreter"] = sys.executable
    task = ByoFlowOperator(
        task_id=task_id,
        source=str(source),
        destination=str(tmp_path / "out"),
        processor=textwrap.dedent(code),
        track_files=False,
        runtime_config={"job_config": {"output_format": "text", **(job or {})}, **(variables or {})},
        notifications=[{"type": "file", "path": str(notes)}],
        **operator,
    )
    log = RecordingLogger()
    task._cached_logger = log  # the task log, as Airflow would show it
    ctx = context()
    try:
        result = task.execute(ctx)
    except ByoFilesFailedError:
        result = ctx["ti"].xcom["return_value"]
    result["_notifications"] = notes.read_text() if notes.exists() else ""
    return result, tmp_path / "out", log


def everything_published(result: dict[str, Any], out: Path, log: RecordingLogger) -> str:
    outputs = (
        "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()) if out.exists() else ""
    )
    return json.dumps(result, default=str) + outputs + log.text


def test_a_snooping_function_finds_no_worker_secret(tmp_path: Path, worker_secrets: dict[str, str]) -> None:
    result, out, log = run_flow(tmp_path, SNOOP, worker_secrets)
    assert result["sandbox"] == "bubblewrap"
    assert result["files_processed"] == 1  # it ran, and found nothing
    assert CANARY not in everything_published(result, out, log)
    assert "FileNotFoundError" in (out / "a.txt").read_text()  # airflow.cfg is not even there


def test_the_same_snooping_function_without_the_sandbox_finds_them(
    tmp_path: Path, worker_secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__SANDBOX", "off")
    result, out, _ = run_flow(tmp_path, SNOOP, worker_secrets)
    assert result["sandbox"] == "off"
    assert CANARY in (out / "a.txt").read_text()  # the attack is real: the sandbox is what stops it


def test_the_workers_loopback_is_reachable_only_with_host_loopback(tmp_path: Path, tcp_server: int) -> None:
    """Network off, and network on (a user-mode stack, the internet but not the host): no way to
    the worker's own services; only ``host_loopback: true`` shares the worker's network."""
    for name, job in [("off", {}), ("on", {"network": True})]:
        result, _, _ = run_flow(tmp_path / name, CONNECT, {"port": tcp_server}, job)
        assert result["files_failed"] == 1, name
        assert "no connection" in result["files"][0]["error"], name
    host = {"network": True, "host_loopback": True}
    result, out, _ = run_flow(tmp_path / "host", CONNECT, {"port": tcp_server}, host)
    assert result["files_processed"] == 1
    assert (out / "a.txt").read_text() == "hello from the worker's network"


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_no_daemon_outlives_the_task(tmp_path: Path) -> None:
    marker = f"byo-daemon-{uuid.uuid4().hex}"
    result, _, _ = run_flow(tmp_path, DAEMON, {"marker": marker})
    assert result["files_processed"] == 1
    deadline = time.monotonic() + 5
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker) == []


def test_a_crash_after_a_fork_is_reported_as_a_crash_promptly(tmp_path: Path) -> None:
    started = time.monotonic()
    result, _, _ = run_flow(tmp_path, FORK_AND_DIE, job={"timeout_seconds": 60})
    assert time.monotonic() - started < 30  # not the 60 s timeout
    assert result["files_failed"] == 1
    assert "ChildDied" in result["files"][0]["error"]
    assert "exited with code 3" in result["files"][0]["error"]


def test_a_forged_done_message_fails_the_file_and_writes_nothing_outside(tmp_path: Path) -> None:
    result, _, _ = run_flow(tmp_path, FORGE)
    assert result["files_failed"] == 1
    assert "the processor sent an invalid message" in result["files"][0]["error"]
    assert not (tmp_path / "outside").exists()
    assert [p for p in tmp_path.rglob("x.txt")] == []


def test_an_output_over_the_cap_fails_with_the_key_to_raise(tmp_path: Path) -> None:
    result, out, _ = run_flow(tmp_path, HUGE, job={"max_output_mb": 1})
    assert result["files_failed"] == 1
    error = result["files"][0]["error"]
    assert "File too large" in error
    assert "job_config.max_output_mb=1" in error
    assert not (out / "huge.bin").exists()


def test_sandbox_required_without_bubblewrap_fails_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__SANDBOX", "required")
    monkeypatch.setattr(
        sandbox_mode, "bubblewrap_status", lambda: (False, "bubblewrap (bwrap) is not installed: x")
    )
    with pytest.raises(
        ByoConfigError, match=r"\[byo\] sandbox = required, but bubblewrap \(bwrap\) is not installed"
    ):
        run_flow(tmp_path, SNOOP, {"airflow_cfg": "-", "metadata_db": "-"})


def test_auto_without_bubblewrap_runs_unsandboxed_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sandbox_mode, "bubblewrap_status", lambda: (False, "bubblewrap (bwrap) is not installed: x")
    )
    result, _, log = run_flow(tmp_path, "def process(file, ctx):\n    return 'ok'\n")
    assert result["sandbox"] == "off"
    assert log.text.count("the processor runs WITHOUT a sandbox") == 1
