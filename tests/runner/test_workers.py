"""
Several children in one task (airflow_byo.runner.workers and the flow runner's ``job_config.workers``):
every file exactly once with children really side by side, failures retried and quarantined as
with one child, the summary's counts, and how many children ``auto`` gives.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.flow import FlowEnvironment, ResolvedFlow
from airflow_byo.runner import workers
from airflow_byo.runner.flow_runner import FlowRunner
from airflow_byo.runtime_config import JobConfig, parse_runtime_config
from airflow_byo.storage import Location
from tests.conftest import RecordingLogger, assert_no_temporaries, make_files, published, run_flow

#: Records which child handled each file and when (outside the outputs: unsandboxed tests only).
TIMED = """
    import json, os, time
    def process(file, ctx):
        started = time.time()
        time.sleep(0.15)
        if file.name.startswith("bad"):
            raise ValueError("cannot parse " + file.name)
        mark = {"file": file.name, "pid": os.getpid(), "start": started, "end": time.time()}
        with open(os.path.join(ctx.variables["marks"], file.name + "." + str(os.getpid())), "w") as handle:
            json.dump(mark, handle)
        return file.name
"""


def marks(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(directory.iterdir())]


def test_two_children_process_every_file_once_side_by_side(tmp_path: Path) -> None:
    (tmp_path / "marks").mkdir()
    names = [f"f{i:02d}.txt" for i in range(12)]
    config = {"marks": str(tmp_path / "marks"), "job_config": {"workers": 2, "output_format": "text"}}
    summary, out = run_flow(tmp_path, TIMED, dict.fromkeys(names, "x"), config, sandbox="off")
    assert published(out) == {name: name for name in names}
    assert_no_temporaries(out)
    seen = marks(tmp_path / "marks")
    assert sorted(m["file"] for m in seen) == names  # each file once, by one child
    pids = {m["pid"] for m in seen}
    assert len(pids) == 2
    first, second = ([m for m in seen if m["pid"] == pid] for pid in pids)
    assert any(a["start"] < b["end"] and b["start"] < a["end"] for a in first for b in second)
    data = summary.as_dict()
    assert data["workers"] == 2
    assert sorted(data["files_per_worker"]) == sorted([len(first), len(second)])
    assert sum(data["files_per_worker"]) == 12
    assert [f["url"].rsplit("/", 1)[-1] for f in data["files"]] == names  # in listing order
    assert "workers (files each)" in summary.format_table()


def test_a_failing_file_is_retried_and_failed_with_two_children(tmp_path: Path) -> None:
    (tmp_path / "marks").mkdir()
    files = {"bad.txt": "x", **{f"f{i}.txt": "x" for i in range(5)}}
    log = RecordingLogger()
    config = {
        "marks": str(tmp_path / "marks"),
        "job_config": {"workers": 2, "retries": 1, "output_format": "text"},
    }
    summary, out = run_flow(tmp_path, TIMED, files, config, log=log, sandbox="off")
    assert sorted(published(out)) == [f"f{i}.txt" for i in range(5)]
    [failed] = summary.failed
    assert (failed.url.rsplit("/", 1)[-1], failed.error) == ("bad.txt", "cannot parse bad.txt")
    assert "failed (attempt 1): cannot parse bad.txt; retrying" in log.text
    assert summary.workers == 2
    assert sum(summary.files_per_worker) == 6


def test_a_failing_file_is_quarantined_with_two_children(tmp_path: Path) -> None:
    (tmp_path / "marks").mkdir()
    source, destination = tmp_path / "in", tmp_path / "out"
    make_files(source, {"bad.txt": "bad", **{f"f{i}.txt": "x" for i in range(5)}})
    config = {
        "marks": str(tmp_path / "marks"),
        "job_config": {"workers": 2, "error_policy": "quarantine", "output_format": "text"},
    }
    runner = FlowRunner(
        flow=ResolvedFlow.resolve(textwrap.dedent(TIMED), runtime_config=config),
        environment=FlowEnvironment(sys.executable),
        log=RecordingLogger(),
        quarantine=Location(str(destination / "_quarantine"), role="destination"),
        sandbox="off",
    )
    src = Location(str(source), role="source")
    summary = runner.run(src, Location(str(destination), role="destination"), src.list_files())
    data = summary.as_dict()
    assert (data["files_processed"], data["files_quarantined"], data["files_failed"]) == (5, 1, 0)
    assert (destination / "_quarantine" / "bad.txt").read_text() == "bad"
    assert json.loads((destination / "_quarantine" / "bad.txt.error.json").read_text())["error"] == (
        "cannot parse bad.txt"
    )


def test_one_worker_reports_one_worker(tmp_path: Path) -> None:
    summary, _ = run_flow(
        tmp_path,
        "def process(file, ctx):\n    return 'ok'\n",
        {"a.txt": "", "b.txt": ""},
        {"job_config": {"workers": 1}},
    )
    assert (summary.workers, summary.files_per_worker) == (1, [2])


# -- how many children ----------------------------------------------------------------------------


def job(**values: Any) -> JobConfig:
    return parse_runtime_config({"job_config": values}).job_config


def test_auto_is_the_cpus_capped_by_the_files_and_max_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "available_cpus", lambda: 16)
    monkeypatch.delenv("AIRFLOW__BYO__MAX_WORKERS", raising=False)
    assert workers.worker_count(job(), 100) == 8  # [byo] max_workers defaults to 8
    assert workers.worker_count(job(), 3) == 3  # no more children than files
    assert workers.worker_count(job(), 0) == 1
    monkeypatch.setenv("AIRFLOW__BYO__MAX_WORKERS", "4")
    assert workers.worker_count(job(), 100) == 4
    assert workers.worker_count(job(workers=6), 100) == 4  # the worker machine's ceiling holds
    assert workers.worker_count(job(workers=2), 100) == 2
    monkeypatch.setattr(workers, "available_cpus", lambda: 2)
    assert workers.worker_count(job(), 100) == 2
    assert workers.worker_count(job(error_policy="fail_fast"), 100) == 1  # it stops at the first failure
    assert workers.worker_count(job(error_policy="fail_fast", workers=2), 100) == 2


def test_auto_in_a_run_is_capped_by_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "available_cpus", lambda: 16)
    summary, _ = run_flow(tmp_path, "def process(file, ctx):\n    return 'ok'\n", {"a.txt": ""})
    assert (summary.workers, summary.files_per_worker) == (1, [1])


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_a_bad_max_workers_is_named(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__MAX_WORKERS", value)
    with pytest.raises(ByoConfigError, match=r"\[byo\] max_workers must be a whole number of at least 1"):
        workers.max_workers()


@pytest.mark.parametrize("children", [1, 2])
def test_every_child_has_exited_on_its_own_when_the_run_returns(tmp_path: Path, children: int) -> None:
    """
    Each pipeline's child is told to stop with its last file and closes behind it; the run
    returns once every child is gone -- after a graceful exit (its atexit handlers ran), not
    killed with the worker thread that started it.
    """
    from tests.runner.test_child_pool import EXITING

    config = {
        "exit_mark": str(tmp_path / "exit"),
        "exit_seconds": 0.3,  # outlives the run's own wind-down
        "file_seconds": 0.2,  # long enough for the second child to start and take files too
        "job_config": {"workers": children, "output_format": "text"},
    }
    names = [f"f{i}.txt" for i in range(8)]
    summary, out = run_flow(tmp_path / "run", EXITING, dict.fromkeys(names, "x"), config, sandbox="off")
    assert summary.as_dict()["files_processed"] == 8
    pids = set((tmp_path / "exit.pid").read_text().split())
    assert len(pids) == children
    assert sorted(p.name for p in tmp_path.glob("exit.*") if p.suffix != ".pid") == sorted(
        f"exit.{pid}" for pid in pids
    )
    assert_no_temporaries(out)


#: A function whose interpreter never exits on its own: at exit it ignores SIGTERM and sleeps,
#: after writing its pid where the test can see it (the stop must end in a kill).
HANGS_AT_EXIT = """
    import atexit, os, signal, time
    def process(file, ctx):
        def linger():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with open(ctx.variables["lingering"] + "." + str(os.getpid()), "w") as handle:
                handle.write("lingering")
            time.sleep(3600)
        if not getattr(process, "registered", False):
            atexit.register(linger)
            process.registered = True
        time.sleep(0.2)  # long enough for the second child to start and take files too
        return "ok"
"""


@pytest.mark.parametrize("children", [1, 2])
def test_a_child_that_never_exits_is_killed_after_the_stop_timeout(
    tmp_path: Path, children: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The stop goes with each pipeline's last file and the pool closes behind it; a child that
    answers, then lingers at exit (SIGTERM ignored) is killed after the stop timeout: the run
    returns with its files processed and no child left behind, whatever the function does.
    """
    import os
    import time

    from airflow_byo.runner import child_process

    monkeypatch.setattr(child_process, "_STOP_TIMEOUT_SECONDS", 1.0)
    config = {
        "lingering": str(tmp_path / "lingering"),
        "job_config": {"workers": children, "output_format": "text"},
    }
    names = [f"f{i}.txt" for i in range(6)]
    started = time.monotonic()
    # sandbox off: the handler writes its host pid where the test reads it
    summary, out = run_flow(tmp_path / "run", HANGS_AT_EXIT, dict.fromkeys(names, "x"), config, sandbox="off")
    assert summary.as_dict()["files_processed"] == 6
    assert time.monotonic() - started < 60  # not the hour the function asked for
    pids = [int(p.suffix[1:]) for p in tmp_path.glob("lingering.*")]
    assert pids, "no child reached its exit handler: the stop was never sent"
    assert_no_temporaries(out)
    assert len(pids) == children
    assert [pid for pid in pids if os.path.exists(f"/proc/{pid}")] == []  # killed, not left running
