"""
The flow runner (airflow_byo.runner.flow_runner) end to end on local directories, with real child
processes: outputs and formats, the summary, error policies, output-name safety and name clashes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.flow import FlowEnvironment, ResolvedFlow
from airflow_byo.runner.flow_runner import FlowRunner
from airflow_byo.storage import Location
from tests.conftest import (
    CSV_TO_RECORDS,
    RecordingLogger,
    assert_no_temporaries,
    inline_runner,
    make_files,
    published,
    run_flow,
)


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


@pytest.mark.parametrize(
    ("call", "name", "message"),
    [
        ("write", "../../etc/x", "leaves the destination"),
        ("write", "/etc/x", "is absolute"),
        ("output", "a/../../b", "leaves the destination"),
    ],
)
def test_path_traversal_output_names_are_rejected(tmp_path: Path, call: str, name: str, message: str) -> None:
    body = f'ctx.write({name!r}, "pwned")' if call == "write" else f"ctx.output({name!r})"
    code = f"""
        def process(file, ctx):
            {body}
    """
    summary, out = run_flow(tmp_path, code, {"a.txt": ""})
    [failed] = summary.failed
    assert failed.error_type == "OutputError"
    assert message in failed.error
    assert published(out) == {}
    assert not (out / name).resolve().exists()  # where the name points, outside the destination


def test_output_name_template_cannot_escape_the_destination(tmp_path: Path) -> None:
    """Caught when the configuration is read, before any file."""
    with pytest.raises(ByoConfigError, match=r"job_config\.output_name: .*leaves the destination"):
        run_flow(
            tmp_path,
            "def process(file, ctx):\n    return 'x'\n",
            {"a.txt": ""},
            {"job_config": {"output_name": "../{stem}"}},
        )


def test_an_escaping_output_name_that_bypassed_validation_is_refused_by_the_child(tmp_path: Path) -> None:
    """Defence in depth: the child checks every name again, whatever the configuration says."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    runner = inline_runner("def process(file, ctx):\n    return 'escaped'\n")
    # with_job copies without validation: the name the config model would have refused
    runner.flow = runner.flow.with_job(output_format="text", output_name="../{stem}.{ext}")
    source = Location(str(tmp_path / "in"))
    summary = runner.run(source, Location(str(tmp_path / "out")), source.list_files())
    [failed] = summary.failed
    assert failed.error_type == "OutputError"
    assert "leaves the destination" in failed.error
    assert not (tmp_path / "a.txt").exists()
    assert published(tmp_path / "out") == {}


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


def test_insights_and_counters_are_aggregated(tmp_path: Path) -> None:
    code = """
        def process(file, ctx):
            ctx.count("rows", 2)
            ctx.insight("last", file.name)
    """
    summary, _ = run_flow(tmp_path, code, {"a.txt": "", "b.txt": ""})
    assert summary.as_dict()["counters"] == {"rows": 4}
    assert summary.as_dict()["insights"] == {"last": "b.txt"}


def annotated_processor(file: InputFileAlias, ctx: Any) -> list[dict[str, Any]]:  # noqa: F821
    return [{"name": file.name}]


def test_a_callable_with_annotations_unknown_to_the_child_runs(tmp_path: Path) -> None:
    make_files(tmp_path / "in", {"a.txt": "x"})
    runner = FlowRunner(
        flow=ResolvedFlow.resolve(annotated_processor),
        environment=FlowEnvironment(sys.executable),
        log=RecordingLogger(),
    )
    source = Location(str(tmp_path / "in"))
    summary = runner.run(source, Location(str(tmp_path / "out")), source.list_files())
    assert summary.failed == []
    assert json.loads((tmp_path / "out" / "a.jsonl").read_text()) == {"name": "a.txt"}


def test_the_sandbox_probe_runs_while_the_environment_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task's first sandbox probe (~45 ms) overlaps the environment's lookup or build."""
    import threading

    from airflow_byo.runner import start_up
    from airflow_byo.runner.start_up import environment_and_sandbox

    probing = threading.Event()

    def probe() -> tuple[str, str]:
        probing.set()
        return "off", "the processor runs WITHOUT a sandbox: no bwrap here"

    class Flow:
        sandbox = ResolvedFlow.resolve("def process(file, ctx):\n    pass\n").sandbox

        def environment(self, log: object) -> FlowEnvironment:
            assert probing.wait(30), "the probe waited for the environment"
            return FlowEnvironment(sys.executable, 1.5)

    monkeypatch.setattr(start_up, "sandbox_mode", probe)
    log = RecordingLogger()
    environment, sandbox = environment_and_sandbox(Flow(), log)  # type: ignore[arg-type]
    assert (environment.python, environment.seconds, sandbox) == (sys.executable, 1.5, "off")
    assert log.text.count("WITHOUT a sandbox: no bwrap here") == 1
