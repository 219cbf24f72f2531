"""
What one file may cost the worker (issue 21): CPU time measured by the worker over the child's
whole process tree, stderr lines cut at MAX_STDERR_LINE_BYTES, notifications and insights capped
per file and per run. Each case also checks that the task's other files are processed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.runner.child_pipes import MAX_STDERR_LINE_BYTES, relay_lines
from airflow_byo.runner.child_usage import tree_cpu_seconds
from airflow_byo.storage import Location
from tests.conftest import RecordingLogger, inline_runner, make_files, published

# -- stderr lines ------------------------------------------------------------------------------


def _relayed(chunks: list[bytes], limit: int) -> list[tuple[bytes, int]]:
    read, write = os.pipe()
    lines: list[tuple[bytes, int]] = []
    reader = threading.Thread(
        target=relay_lines, args=(read, lambda raw, cut: lines.append((raw, cut)), limit)
    )
    reader.start()
    for chunk in chunks:
        os.write(write, chunk)
    os.close(write)
    reader.join()
    os.close(read)
    return lines


def test_lines_are_relayed_whole_and_long_ones_cut_with_the_count_of_what_was_dropped() -> None:
    lines = _relayed([b"first\nsec", b"ond\n", b"x" * 25 + b"\nlast"], limit=10)
    assert lines == [(b"first", 0), (b"second", 0), (b"x" * 10, 15), (b"last", 0)]


def test_a_long_line_in_one_chunk_is_cut_too() -> None:
    assert _relayed([b"y" * 30 + b"\nok\n"], limit=8) == [(b"y" * 8, 22), (b"ok", 0)]


def test_a_line_without_newline_never_holds_more_than_the_limit() -> None:
    megabyte = b"z" * (1 << 20)
    lines = _relayed([megabyte] * 8, limit=1000)
    assert lines == [(b"z" * 1000, 8 * (1 << 20) - 1000)]


def _run(
    tmp_path: Path,
    code: str,
    files: dict[str, str],
    job: dict[str, Any],
    variables: dict[str, Any] | None = None,
) -> tuple[Any, Path, RecordingLogger, list[tuple[str, Any]]]:
    log = RecordingLogger()
    notified: list[tuple[str, Any]] = []
    config = {"job_config": {"output_format": "text", **job}, **(variables or {})}
    runner = inline_runner(textwrap.dedent(code), config, log)
    runner.on_notify = lambda url, event: notified.append((url, event))
    source = tmp_path / "in"
    source.mkdir()
    make_files(source, files)
    src = Location(str(source), role="source")
    summary = runner.run(src, Location(str(tmp_path / "out"), role="destination"), src.list_files())
    return summary, tmp_path / "out", log, notified


def test_a_huge_stderr_line_reaches_the_task_log_cut(tmp_path: Path) -> None:
    code = """
        import sys
        def process(file, ctx):
            if file.name == "a.txt":
                for _ in range(64):
                    sys.stderr.write("q" * (1 << 20))
                sys.stderr.write("\\n")
                sys.stderr.flush()
            return "ok"
    """
    _, out, log, _ = _run(tmp_path, code, {"a.txt": "", "b.txt": ""}, {})
    assert published(out) == {"a.txt": "ok", "b.txt": "ok"}
    [line] = [line for line in log.lines if "qqq" in line]
    assert f"[... {64 * (1 << 20) - MAX_STDERR_LINE_BYTES} more bytes of this line cut" in line
    assert len(line) < MAX_STDERR_LINE_BYTES + 200


# -- CPU time ----------------------------------------------------------------------------------

SPINNER = """
    import os, resource, signal, time
    def process(file, ctx):
        if file.name != "spin.txt":
            return "ok"
        signal.signal(signal.SIGPROF, signal.SIG_IGN)  # the child's own timer: ignored
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)
        signal.setitimer(signal.ITIMER_PROF, 0)
        resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        if ctx.variables.get("fork"):
            if os.fork() == 0:  # the CPU is burned by a process of its own
                while True:
                    pass
            time.sleep(60)
        while True:
            pass
"""


@pytest.mark.parametrize("fork", [False, True], ids=["in-the-child", "in-a-forked-process"])
def test_a_function_that_escapes_its_own_cpu_timer_is_killed_by_the_worker(
    tmp_path: Path, fork: bool
) -> None:
    job = {"cpu_seconds": 1, "timeout_seconds": 60}
    summary, out, _, _ = _run(tmp_path, SPINNER, {"spin.txt": "", "z.txt": ""}, job, {"fork": fork})
    [failed] = summary.failed
    assert failed.error_type == "CpuTimeExceeded", failed.error
    assert "job_config.cpu_seconds" in failed.error
    assert failed.seconds < 20  # far before the timeout
    assert published(out) == {"z.txt": "ok"}


def test_tree_cpu_seconds_counts_descendants() -> None:
    script = textwrap.dedent("""
        import os, time
        if os.fork() == 0:
            end = time.process_time() + 0.6
            while time.process_time() < end:
                pass
            os._exit(0)
        os.wait()
        time.sleep(5)
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while tree_cpu_seconds(process.pid) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tree_cpu_seconds(process.pid) >= 0.5  # the reaped child's time, via cutime
    finally:
        process.kill()
        process.wait()


# -- notifications and insights ------------------------------------------------------------------


def test_notifications_are_capped_per_file_and_per_run_with_a_warning(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            for n in range(10):
                ctx.notify(f"{file.name} {n}")
            return "ok"
    """
    job = {"max_notifications_per_file": 3, "max_notifications_per_run": 5}
    _, out, log, notified = _run(tmp_path, code, {"a.txt": "", "b.txt": "", "c.txt": ""}, job)
    assert published(out) == {"a.txt": "ok", "b.txt": "ok", "c.txt": "ok"}
    assert len(notified) == 5
    assert any("beyond job_config.max_notifications_per_file=3" in line for line in log.lines)
    assert any("beyond job_config.max_notifications_per_run=5" in line for line in log.lines)


def test_a_huge_notification_field_is_dropped_not_kept(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            ctx.notify("x" * (5 << 20))
            return "ok"
    """
    _, out, _, notified = _run(tmp_path, code, {"a.txt": ""}, {})
    assert published(out) == {"a.txt": "ok"}
    [(_, event)] = notified
    assert len(repr(event)) < 10_000


def test_insight_keys_beyond_the_cap_are_counted_as_dropped(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            for n in range(20):
                ctx.insight(f"{file.name}-{n}", n)
            return "ok"
    """
    summary, out, _, _ = _run(tmp_path, code, {"a.txt": "", "b.txt": ""}, {"max_insight_keys": 25})
    assert published(out) == {"a.txt": "ok", "b.txt": "ok"}
    assert len(summary.tally.insights) + len(summary.tally.counters) == 25
    assert summary.tally.insights_dropped == 15


def test_an_oversized_insight_fails_only_its_file(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            if file.name == "a.txt":
                ctx.insight("big", "x" * (1 << 20))
            return "ok"
    """
    summary, out, _, _ = _run(tmp_path, code, {"a.txt": "", "b.txt": ""}, {})
    [failed] = summary.failed
    assert failed.url.endswith("a.txt")
    assert "insight" in failed.error
    assert published(out) == {"b.txt": "ok"}
