"""
The child runtime (airflow_byo.runtime.child) as the worker sees it: the protocol on the original
stdout, the user's prints on stderr, one answer per file, the memory cap -- and the promise to
import with the standard library alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from airflow_byo.runner.child_environment import stage_runtime
from tests.conftest import published, run_flow

_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from airflow_byo.runtime.child import main; sys.exit(main())"
)


def converse(tmp_path: Path, code: str, files: list[str]) -> tuple[list[dict[str, Any]], str]:
    """Run a real child on ``files`` (names under tmp_path/in); return its messages and its stderr."""
    runtime = stage_runtime(str(tmp_path / "runtime"))
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "stage").mkdir(exist_ok=True)
    requests: list[dict[str, Any]] = [
        {
            "op": "init",
            "code": textwrap.dedent(code),
            "reference": None,
            "function_name": "process",
            "sys_path": [],
            "job_config": {"output_format": "text", "output_name": "{stem}.{ext}"},
            "variables": {},
            "args": [],
            "kwargs": {},
        }
    ]
    for seq, name in enumerate(files):
        path = tmp_path / "in" / name
        path.write_text(name)
        requests.append(
            {
                "op": "file",
                "seq": seq,
                "path": str(path),
                "url": str(path),
                "name": name,
                "relative_path": name,
                "size": path.stat().st_size,
                "out_prefix": str(tmp_path / "stage" / f"{seq:06d}"),
            }
        )
    requests.append({"op": "stop"})
    result = subprocess.run(
        [sys.executable, "-I", "-c", _BOOTSTRAP, runtime],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def test_one_answer_per_file_and_prints_go_to_stderr(tmp_path: Path) -> None:
    code = """
        import sys
        def process(file, ctx):
            print("printed", file.name)
            sys.stdout.write('{"ev": "done", "seq": 99}\\n')  # the user's stdout is not the protocol
            ctx.notify("seen", rows=1)
            if file.name == "bad.txt":
                raise KeyError("price")
            return file.open().read().upper()
    """
    messages, stderr = converse(tmp_path, code, ["a.txt", "bad.txt"])
    assert [m["ev"] for m in messages] == ["ready", "notify", "done", "notify", "error"]
    assert messages[0]["executable"] == sys.executable
    assert messages[1] == {
        "ev": "notify",
        "seq": 0,
        "message": "seen",
        "level": "info",
        "fields": {"rows": 1},
    }
    done = messages[2]
    assert done["seq"] == 0
    assert done["outputs"] == [{"name": "a.txt", "size": 5, "records": None}]
    assert (tmp_path / "stage" / "000000-00000").read_text() == "A.TXT"
    error = messages[4]
    assert (error["seq"], error["type"], error["message"]) == (1, "KeyError", "'price'")
    assert error["traceback"].startswith("Traceback")
    assert "child.py" not in error["traceback"].splitlines()[1]  # starts in the user's code
    assert "printed a.txt" in stderr
    assert '"seq": 99' in stderr


def test_a_processor_that_cannot_load_answers_load_error(tmp_path: Path) -> None:
    messages, _ = converse(tmp_path, "import byo_no_such_module_xyz\ndef process(file, ctx):\n    pass\n", [])
    [message] = messages
    assert message["ev"] == "load_error"
    assert "No module named 'byo_no_such_module_xyz'" in message["message"]
    assert message["lineno"] == 1
    assert "missing from `packages`" in message["hint"]


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


def test_runtime_imports_with_the_standard_library_only(tmp_path: Path) -> None:
    """The flow's virtualenv has no Airflow or pydantic: the runtime must not need them."""
    staged = stage_runtime(str(tmp_path / "staged"))
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {staged!r})
        import airflow_byo.runtime.child
        import airflow_byo.runtime
        from airflow_byo.runtime import Context, InputFile, OutputError, safe_output_name
        leaked = sorted(
            name for name in sys.modules
            if name.split(".")[0] in ("airflow", "pydantic", "pydantic_core", "sqlalchemy")
        )
        print(json.dumps({{
            "leaked": leaked,
            "file": airflow_byo.runtime.child.__file__,
            "site": [p for p in sys.path if "site-packages" in p],
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["leaked"] == []
    assert report["site"] == []
    assert report["file"].startswith(str(tmp_path / "staged"))
