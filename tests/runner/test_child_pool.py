"""The child pool (airflow_byo.runner.child_pool): what every child starts with, recycling, retries."""

from __future__ import annotations

import json
import os
from pathlib import Path

from airflow_byo.processor import resolve_processor
from airflow_byo.runner.child_pool import init_request
from airflow_byo.runner.output_handoff import OutputStaging
from airflow_byo.runtime.protocol import FileRequest
from airflow_byo.runtime_config import parse_runtime_config
from tests.conftest import RecordingLogger, inline_runner, published, run_flow


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


def test_one_child_serves_a_batch_and_is_recycled_after_batch_size(tmp_path: Path) -> None:
    # An id drawn when a child loads the function (a pid would not do: in the sandbox's own PID
    # namespace every child is pid 2).
    code = """
        import os, uuid
        CHILD = uuid.uuid4().hex
        def process(file, ctx):
            return [{"child": CHILD, "pid": os.getpid()}]
    """
    files = {f"f{i}.txt": "" for i in range(5)}
    one_child = {"job_config": {"batch_size": 2, "workers": 1}}  # files in order, through one pool
    _, out = run_flow(tmp_path, code, files, one_child)
    children = [json.loads(text)["child"] for _, text in sorted(published(out).items())]
    assert children[0] == children[1] != children[2] == children[3] != children[4]
    _, out = run_flow(tmp_path / "off", code, files, one_child, sandbox="off")
    assert os.getpid() not in [json.loads(text)["pid"] for text in published(out).values()]


FLAKY = """
    def process(file, ctx):
        with open(ctx.variables["attempts"], "a") as handle:
            handle.write("x")
        with open(ctx.variables["attempts"]) as handle:
            attempt = len(handle.read())
        if attempt == 1:
            ctx.write("first.txt", "from the failed attempt")
            ctx.write("second.txt", "from the failed attempt")
            raise ConnectionError("flaky upstream")
        return "attempt %d" % attempt
"""


def file_request(tmp_path: Path, name: str = "a.txt") -> FileRequest:
    path = tmp_path / name
    path.write_text("x")
    (tmp_path / "stage").mkdir(exist_ok=True)
    return {
        "op": "file",
        "seq": 0,
        "path": str(path),
        "url": str(path),
        "name": name,
        "relative_path": name,
        "size": 1,
        "out_prefix": "",  # the child process fills it in: its own drop folder
    }


def staged_files(tmp_path: Path) -> list[str]:
    """Everything left in the outputs' staging: the children's drop folders and the taken folder."""
    return sorted(
        str(p.relative_to(tmp_path / "stage")) for p in (tmp_path / "stage").rglob("*") if p.is_file()
    )


def test_a_failed_attempt_is_retried_and_what_it_staged_is_discarded(tmp_path: Path) -> None:
    log = RecordingLogger()
    runner = inline_runner(
        FLAKY,
        {"attempts": str(tmp_path / "attempts"), "job_config": {"retries": 1, "output_format": "text"}},
        log,
        sandbox="off",  # the attempts are counted in a file outside the outputs
    )
    request = file_request(tmp_path)
    with runner.children(inputs=str(tmp_path), staging=OutputStaging(str(tmp_path / "stage"))) as children:
        assert not children.can_queue_ahead()  # a retry must not queue behind the next file
        children.start(request)
        outcome = children.process(request, "a.txt")
        assert outcome.ok
        assert outcome.attempts == 2
        [output] = outcome.outputs
        assert output.name == "a.txt"
        assert Path(output.local_path).read_text() == "attempt 2"
        assert staged_files(tmp_path) == ["taken/000000-00000"]  # the failed attempt's are gone
    assert "a.txt failed (attempt 1): flaky upstream; retrying" in log.text


def test_without_retries_a_failure_is_final(tmp_path: Path) -> None:
    runner = inline_runner(FLAKY, {"attempts": str(tmp_path / "attempts")}, sandbox="off")
    request = file_request(tmp_path)
    with runner.children(inputs=str(tmp_path), staging=OutputStaging(str(tmp_path / "stage"))) as children:
        children.start(request)
        outcome = children.process(request, "a.txt")
        assert (outcome.status, outcome.attempts) == ("error", 1)
        assert (outcome.error_type, outcome.error) == ("ConnectionError", "flaky upstream")
        assert staged_files(tmp_path) == []  # the partial outputs are gone


def test_files_are_queued_ahead_only_into_a_child_that_stays(tmp_path: Path) -> None:
    runner = inline_runner("def process(file, ctx):\n    return 'ok'\n", {"job_config": {"batch_size": 2}})
    request = file_request(tmp_path)
    (tmp_path / "stage").mkdir(exist_ok=True)
    with runner.children(inputs=str(tmp_path), staging=OutputStaging(str(tmp_path / "stage"))) as children:
        assert children.can_queue_ahead()  # two files fit into this child
        children.start(request)
        assert children.process(request, "a.txt").ok
        assert not children.can_queue_ahead()  # the next file is this child's last


#: The child writes "exited" to the file ``ctx.variables["exit_mark"]`` when its interpreter
#: exits normally (atexit runs on a graceful stop, not on a kill), after ``exit_seconds``; each
#: file takes ``file_seconds``, and the child's pid is added to ``exit_mark.pid`` per file.
EXITING = """
    import atexit, os, time
    def process(file, ctx):
        def mark():
            time.sleep(ctx.variables.get("exit_seconds", 0))
            with open(ctx.variables["exit_mark"] + "." + str(os.getpid()), "w") as handle:
                handle.write("exited")
        if not getattr(process, "marked", False):
            atexit.register(mark)
            process.marked = True
        with open(ctx.variables["exit_mark"] + ".pid", "a") as handle:
            handle.write(str(os.getpid()) + "\\n")
        time.sleep(ctx.variables.get("file_seconds", 0))
        return "ok"
"""


def _exit_marks(tmp_path: Path) -> list[str]:
    return sorted(p.read_text() for p in tmp_path.glob("exit.*") if p.suffix != ".pid")


def _pids(tmp_path: Path) -> list[str]:
    return (tmp_path / "exit.pid").read_text().split()


def test_the_last_file_tells_the_child_to_exit_once_it_has_answered(tmp_path: Path) -> None:
    import time

    config = {"exit_mark": str(tmp_path / "exit"), "job_config": {"output_format": "text"}}
    log = RecordingLogger()
    runner = inline_runner(EXITING, config, log, sandbox="off")  # the mark is written outside the outputs
    request = file_request(tmp_path)
    with runner.children(inputs=str(tmp_path), staging=OutputStaging(str(tmp_path / "stage"))) as children:
        children.start(request)
        children.finish()  # sent right behind the last file, before its answer
        assert children.process(request, "a.txt").ok
        deadline = time.monotonic() + 30
        while not _exit_marks(tmp_path) and time.monotonic() < deadline:  # not waiting for the pool's exit
            time.sleep(0.05)
        assert _exit_marks(tmp_path) == ["exited"]  # a graceful exit: its atexit handlers ran
        assert not children.can_queue_ahead()  # it takes no more files...
        second = {**file_request(tmp_path, "b.txt"), "seq": 1}
        children.start(second)  # ...so a file sent after all goes to a new child
        assert children.process(second, "b.txt").ok
    first, then = _pids(tmp_path)
    assert first != then
    assert log.text.count("Processor loaded") == 2


def test_with_retries_the_last_files_child_stays_for_a_retry(tmp_path: Path) -> None:
    log = RecordingLogger()
    runner = inline_runner(
        FLAKY, {"attempts": str(tmp_path / "attempts"), "job_config": {"retries": 1}}, log, sandbox="off"
    )
    request = file_request(tmp_path)
    with runner.children(inputs=str(tmp_path), staging=OutputStaging(str(tmp_path / "stage"))) as children:
        children.start(request)
        children.finish()  # with retries: not yet (the retry would need a child)
        outcome = children.process(request, "a.txt")
        assert (outcome.ok, outcome.attempts) == (True, 2)
    assert log.text.count("Processor loaded") == 1  # the retry ran in the same child


def test_a_pool_closed_behind_stops_its_child_and_removes_its_folders(tmp_path: Path) -> None:
    config = {
        "exit_mark": str(tmp_path / "exit"),
        "exit_seconds": 0.3,
        "job_config": {"output_format": "text"},
    }
    runner = inline_runner(EXITING, config, sandbox="off")
    request = file_request(tmp_path)
    with runner.children(inputs=str(tmp_path), staging=OutputStaging(str(tmp_path / "stage"))) as children:
        runtime = Path(children._runtime_dir)
        children.start(request)
        assert children.process(request, "a.txt").ok
        closing = children.close_behind()  # returns at once; the child exits meanwhile
    assert closing.is_alive()  # leaving the block did not wait for the child's 0.3 s of atexit work
    closing.join(timeout=30)
    assert not closing.is_alive()
    assert _exit_marks(tmp_path) == ["exited"]  # stopped, not killed: it had 0.3 s of atexit work
    assert not runtime.exists()
