"""The flow runner end to end on local directories, with a real child process per batch."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoProcessorError
from airflow_byo.flow_config import parse_runtime_config
from airflow_byo.processor import resolve_processor
from airflow_byo.runner.flow_runner import FlowRunner
from airflow_byo.runner.preview import preview_file
from airflow_byo.storage import TEMP_MARKER, Location
from airflow_byo.summary import RunSummary
from tests.conftest import RecordingLogger


def make_files(directory: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def run_flow(
    tmp_path: Path,
    code: str,
    files: dict[str, str | bytes],
    runtime_config: dict[str, Any] | None = None,
    log: RecordingLogger | None = None,
) -> tuple[RunSummary, Path]:
    source, destination = tmp_path / "in", tmp_path / "out"
    source.mkdir(exist_ok=True)
    make_files(source, files)
    runner = FlowRunner(
        processor=resolve_processor(textwrap.dedent(code)),
        config=parse_runtime_config(runtime_config),
        python=sys.executable,
        log=log or RecordingLogger(),
    )
    src = Location(str(source), role="source")
    summary = runner.run(src, Location(str(destination), role="destination"), src.list_files())
    return summary, destination


def published(destination: Path) -> dict[str, str]:
    """Every file under the destination (relative name -> text); temp names included on purpose."""
    if not destination.exists():
        return {}
    return {
        str(p.relative_to(destination)): p.read_bytes().decode(errors="replace")
        for p in sorted(destination.rglob("*"))
        if p.is_file()
    }


def assert_no_temporaries(destination: Path) -> None:
    leftovers = [p for p in destination.rglob("*") if TEMP_MARKER in p.name] if destination.exists() else []
    assert leftovers == []


CSV_TO_RECORDS = """
    import csv
    def process(file, ctx, factor=1):
        with file.open(newline="") as handle:
            for row in csv.DictReader(handle):
                ctx.count("records_in")
                yield {key: int(value) * factor for key, value in row.items()}
"""


def test_records_become_jsonl_outputs_with_summary(tmp_path: Path) -> None:
    summary, out = run_flow(
        tmp_path,
        CSV_TO_RECORDS,
        {"a.csv": "x,y\n1,2\n3,4\n", "sub/b.csv": "x,y\n5,6\n"},
        {"custom_code": {"kwargs": {"factor": 10}}, "job_config": {"output_name": "{rel_dir}/{stem}.{ext}"}},
    )
    assert published(out) == {
        "a.jsonl": '{"x": 10, "y": 20}\n{"x": 30, "y": 40}\n',
        "sub/b.jsonl": '{"x": 50, "y": 60}\n',
    }
    data = summary.as_dict()
    assert data["files_seen"] == data["files_processed"] == 2
    assert data["files_failed"] == data["files_skipped"] == 0
    assert data["records_in"] == 3
    assert data["records_out"] == 3
    assert data["bytes_in"] == len("x,y\n1,2\n3,4\n") + len("x,y\n5,6\n")
    assert data["bytes_out"] == sum(len(v) for v in published(out).values())
    assert [f["status"] for f in data["files"]] == ["processed", "processed"]
    json.dumps(data)  # XCom-ready


@pytest.mark.parametrize(
    ("output_format", "expected"),
    [
        ("csv", "x,y\r\n1,2\r\n"),
        ("json", '[\n{"x": 1, "y": 2}\n]\n'),
    ],
)
def test_output_formats(tmp_path: Path, output_format: str, expected: str) -> None:
    _, out = run_flow(
        tmp_path, CSV_TO_RECORDS, {"a.csv": "x,y\n1,2\n"}, {"job_config": {"output_format": output_format}}
    )
    assert published(out) == {f"a.{output_format}": expected}


def test_bytes_str_and_many_outputs(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            if file.name == "many.txt":
                with ctx.output("parts/one.txt") as handle:
                    handle.write("first")
                ctx.write("parts/two.bin", b"\\x00\\x01")
                return None
            if file.name == "bytes.txt":
                return file.open("rb").read().upper()
            return "text:" + file.open().read()
    """
    summary, out = run_flow(
        tmp_path,
        code,
        {"many.txt": "", "bytes.txt": "abc", "str.txt": "hi"},
        {"job_config": {"output_format": "text"}},
    )
    assert published(out) == {
        "bytes.txt": "ABC",
        "parts/one.txt": "first",
        "parts/two.bin": "\x00\x01",
        "str.txt": "text:hi",
    }
    assert summary.as_dict()["outputs_written"] == 4


def test_one_child_serves_a_batch_and_is_recycled_after_batch_size(tmp_path: Path) -> None:
    code = """
        import os
        def process(file, ctx):
            return [{"pid": os.getpid()}]
    """
    files = {f"f{i}.txt": "" for i in range(5)}
    _, out = run_flow(tmp_path, code, files, {"job_config": {"batch_size": 2}})
    pids = [json.loads(text)["pid"] for _, text in sorted(published(out).items())]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert os.getpid() not in pids


def test_function_raising_on_one_file_fails_only_that_file(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            with ctx.output(file.stem + ".out") as handle:
                handle.write("partial ")
                if file.name == "bad.txt":
                    raise ValueError("cannot parse " + file.name)
                handle.write("complete")
    """
    log = RecordingLogger()
    summary, out = run_flow(tmp_path, code, {"a.txt": "", "bad.txt": "", "c.txt": ""}, log=log)
    # The bad file's partial output never reaches the destination; the others are complete.
    assert published(out) == {"a.out": "partial complete", "c.out": "partial complete"}
    assert_no_temporaries(out)
    [failed] = summary.failed
    assert failed.url.endswith("bad.txt")
    assert failed.error_type == "ValueError"
    assert failed.error == "cannot parse bad.txt"
    assert "line 6, in process" in log.text  # the user's traceback, with the line of their code
    assert summary.as_dict()["files_processed"] == 2


def test_fail_fast_stops_at_first_error_and_skips_the_rest(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            if file.name == "b.txt":
                raise RuntimeError("boom")
            return "ok"
    """
    summary, out = run_flow(
        tmp_path, code, {"a.txt": "", "b.txt": "", "c.txt": ""}, {"job_config": {"error_policy": "fail_fast"}}
    )
    assert [f["status"] for f in summary.as_dict()["files"]] == ["processed", "failed", "skipped"]
    assert published(out) == {"a.jsonl": "ok"}


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


def test_memory_hog_is_stopped_by_the_cap(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            if file.name == "hog.txt":
                hoard = bytearray(1024 * 1024 * 1024)  # 1 GiB, above the 300 MB cap
                return bytes(hoard[:1])
            return "fine"
    """
    summary, out = run_flow(
        tmp_path,
        code,
        {"hog.txt": "", "ok.txt": ""},
        {"job_config": {"max_memory_mb": 300, "output_format": "text"}},
    )
    [failed] = summary.failed
    assert failed.url.endswith("hog.txt")
    assert failed.error_type == "MemoryError"
    assert "memory limit exceeded" in failed.error
    assert "job_config.max_memory_mb=300 MB" in failed.error
    assert published(out) == {"ok.txt": "fine"}


def test_large_input_is_not_read_into_memory_by_the_framework(tmp_path: Path) -> None:
    """A 1 GiB (sparse) input goes through a child capped at 256 MB: only the function reads it."""
    source = tmp_path / "in"
    source.mkdir()
    with open(source / "big.bin", "wb") as handle:
        handle.truncate(1024 * 1024 * 1024)
    code = """
        def process(file, ctx):
            with file.open("rb") as handle:
                return {"size": file.size, "head": len(handle.read(16))}
    """
    summary, out = run_flow(tmp_path, code, {}, {"job_config": {"max_memory_mb": 256}})
    assert summary.failed == []
    assert json.loads(published(out)["big.jsonl"]) == {"size": 1024**3, "head": 16}


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


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('ctx.write("../../etc/x", "pwned")', "leaves the destination"),
        ('ctx.write("/etc/x", "pwned")', "is absolute"),
        ('ctx.output("a/../../b")', "leaves the destination"),
    ],
)
def test_path_traversal_output_names_are_rejected(tmp_path: Path, body: str, message: str) -> None:
    code = f"""
        def process(file, ctx):
            {body}
    """
    summary, out = run_flow(tmp_path, code, {"a.txt": ""})
    [failed] = summary.failed
    assert failed.error_type == "OutputError"
    assert message in failed.error
    assert published(out) == {}
    assert not (tmp_path / "etc").exists()


def test_output_name_template_cannot_escape_the_destination(tmp_path: Path) -> None:
    """Caught when the configuration is read, before any file."""
    from airflow_byo.exceptions import ByoConfigError

    with pytest.raises(ByoConfigError, match=r"job_config\.output_name: .*leaves the destination"):
        run_flow(
            tmp_path,
            "def process(file, ctx):\n    return 'x'\n",
            {"a.txt": ""},
            {"job_config": {"output_name": "../{stem}"}},
        )
    assert published(tmp_path / "out") == {}
    assert not (tmp_path / "a").exists()


def test_two_inputs_writing_the_same_output_name_is_an_error(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            ctx.write("all.txt", file.name)
    """
    summary, out = run_flow(tmp_path, code, {"a.txt": "", "b.txt": ""})
    [failed] = summary.failed
    assert failed.url.endswith("b.txt")
    assert "'all.txt' was already written by" in failed.error
    assert "output_name" in failed.error
    assert published(out) == {"all.txt": "a.txt"}


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
    assert summary.notifications == 1


def test_insights_and_counters_are_aggregated(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            ctx.count("rows", 2)
            ctx.insight("last", file.name)
    """
    summary, _ = run_flow(tmp_path, code, {"a.txt": "", "b.txt": ""})
    assert summary.as_dict()["counters"] == {"rows": 4}
    assert summary.as_dict()["insights"] == {"last": "b.txt"}


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
        processor=resolve_processor("def process(file, ctx):\n    pass\n"),
        config=parse_runtime_config(None),
        python=str(tmp_path / "no-such-python"),
        log=RecordingLogger(),
    )
    (tmp_path / "in").mkdir()
    source = Location(str(tmp_path / "in"))
    with pytest.raises(ByoProcessorError, match=r"cannot start the processor's interpreter .*no-such-python"):
        runner.run(source, Location(str(tmp_path / "out")), [])


def test_test_mode_previews_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in"
    make_files(source, {"a.csv": "x,y\n" + "".join(f"{i},{i}\n" for i in range(50))})
    runner = FlowRunner(
        processor=resolve_processor(textwrap.dedent(CSV_TO_RECORDS)),
        config=parse_runtime_config({"job_config": {"preview_lines": 3}}),
        python=sys.executable,
        log=RecordingLogger(),
    )
    location = Location(str(source))
    summary, previews = preview_file(runner, location, location.file_info("a.csv"))
    [preview] = previews
    assert preview.name == "a.jsonl"
    assert preview.records == 50
    assert preview.lines == ['{"x": 0, "y": 0}', '{"x": 1, "y": 1}', '{"x": 2, "y": 2}']
    assert preview.truncated
    assert summary.test_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert sorted(p.name for p in source.iterdir()) == ["a.csv"]


_KILLED_WORKER = """
import sys, logging
from airflow_byo.flow_config import parse_runtime_config
from airflow_byo.runner.flow_runner import FlowRunner
from airflow_byo.runner.preview import preview_file
from airflow_byo.processor import resolve_processor
from airflow_byo.storage import Location
code = '''
import os, time
def process(file, ctx):
    open(ctx.variables["pid_file"], "w").write(str(os.getpid()))
    time.sleep(3600)
'''
source = Location(sys.argv[1])
runner = FlowRunner(
    processor=resolve_processor(code),
    config=parse_runtime_config({"pid_file": sys.argv[3]}),
    python=sys.executable,
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
    worker = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WORKER, str(tmp_path / "in"), str(tmp_path / "out"), str(pid_file)]
    )
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    leftovers = [p for p in (tmp_path / "out").iterdir() if p.name.startswith(TEMP_MARKER)]
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
    assert sorted(sweep(str(tmp_path / "out"))) == sorted(str(p) for p in leftovers)  # ... the next run does
    assert published(tmp_path / "out") == {}


def annotated_processor(file: InputFileAlias, ctx: Any) -> list[dict[str, Any]]:  # noqa: F821
    return [{"name": file.name}]


def test_a_callable_with_annotations_unknown_to_the_child_runs(tmp_path: Path) -> None:
    make_files(tmp_path / "in", {"a.txt": "x"})
    runner = FlowRunner(
        processor=resolve_processor(annotated_processor),
        config=parse_runtime_config(None),
        python=sys.executable,
        log=RecordingLogger(),
    )
    source = Location(str(tmp_path / "in"))
    summary = runner.run(source, Location(str(tmp_path / "out")), source.list_files())
    assert summary.failed == []
    assert json.loads((tmp_path / "out" / "a.jsonl").read_text()) == {"name": "a.txt"}
