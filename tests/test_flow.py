"""
The resolved flow (airflow_byo.flow): what a flow declares, resolved once, and the same from every
entry point -- the operator, a spec, @task.byo, `airflow byo test`, the `byo` script, the page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.flow import ResolvedFlow
from tests.conftest import RecordingLogger, context

RUNTIMES = """\
runtimes:
  data:
    packages: ["six==1.16.0", "humanize==4.11.0"]
    read_only_paths: [{reference}]
    job_config: {{timeout_seconds: 30, max_memory_mb: 1024, max_processes: 64}}
"""

CODE = """\
def process(file, ctx, suffix="?"):
    import humanize, six
    rows = [line.strip() for line in file.open() if line.strip()]
    ctx.insight("rows", len(rows))
    ctx.count("records_in", len(rows))
    size = humanize.naturalsize(file.size)
    return [{"row": row + suffix, "six": six.__version__, "size": size} for row in rows]
"""

#: The flow's own packages and runtime config: six's pin overrides the runtime's.
PACKAGES = "six==1.17.0"
RUNTIME_CONFIG = {
    "custom_code": {"kwargs": {"suffix": "!"}},
    "job_config": {"preview_lines": 5, "cpu_seconds": 20},
}


@pytest.fixture
def runtimes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    reference = tmp_path / "reference"
    reference.mkdir()
    path = tmp_path / "runtimes.yaml"
    path.write_text(RUNTIMES.format(reference=reference))
    monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(path))
    return reference


# -- resolving -------------------------------------------------------------------------------------


def test_a_flow_on_a_runtime_gets_its_packages_limits_and_folders_under_its_own(runtimes: Path) -> None:
    flow = ResolvedFlow.resolve(CODE, packages=PACKAGES, runtime="data", runtime_config=RUNTIME_CONFIG)
    assert flow.requirements == ("six==1.17.0", "humanize==4.11.0")
    assert flow.overrides == (("six==1.16.0", "six==1.17.0"),)
    job = flow.job
    assert (job.timeout_seconds, job.max_memory_mb, job.preview_lines, job.cpu_seconds) == (30, 1024, 5, 20)
    assert flow.config.custom_code.kwargs == {"suffix": "!"}
    sandbox = flow.sandbox
    assert (sandbox.network, sandbox.read_only_paths) == ("off", (str(runtimes),))
    assert (sandbox.max_processes, sandbox.max_memory_bytes) == (64, 1024 << 20)
    assert flow.interpreter() is None  # a built virtualenv
    described = flow.describe()
    assert described["runtime"] == "data"
    assert described["sandbox"]["read_only_paths"] == [str(runtimes)]
    json.dumps(described)


def test_every_declared_problem_is_found_when_resolving(runtimes: Path) -> None:
    with pytest.raises(ByoConfigError, match="unknown runtime 'dta'; known runtimes: data, default"):
        ResolvedFlow.resolve(CODE, runtime="dta")
    with pytest.raises(ByoConfigError, match=r"job_config\.timeout_secs: unknown key"):
        ResolvedFlow.resolve(CODE, runtime_config={"job_config": {"timeout_secs": 1}})
    with pytest.raises(ByoConfigError, match="packages cannot be combined with python_interpreter"):
        ResolvedFlow.resolve(CODE, runtime="data", python_interpreter=sys.executable)
    with pytest.raises(Exception, match="cannot be called as process"):
        ResolvedFlow.resolve(CODE, runtime_config={"custom_code": {"kwargs": {"nope": 1}}})


def test_an_interpreter_that_is_not_there_is_named(tmp_path: Path) -> None:
    flow = ResolvedFlow.resolve(CODE, python_interpreter=str(tmp_path / "python9"))
    with pytest.raises(ByoConfigError) as raised:
        flow.interpreter()
    assert str(raised.value) == (
        f"python_interpreter {str(tmp_path / 'python9')!r} is not an executable file on this machine. Fix: "
        "install that interpreter on every worker, or drop python_interpreter to use a built virtualenv"
    )
    assert ResolvedFlow.resolve(CODE, python_interpreter=sys.executable).interpreter() == sys.executable


def test_the_environment_is_logged_with_the_runtime_and_the_overrides(runtimes: Path) -> None:
    flow = ResolvedFlow.resolve(CODE, packages=PACKAGES, runtime="data")
    log = RecordingLogger()
    built: list[Any] = []
    environment = flow.environment(
        log, lambda requirements, cache: built.append(requirements) or "/venv/python"
    )
    assert environment.python == "/venv/python"
    assert built == [["six==1.17.0", "humanize==4.11.0"]]
    assert "The flow's six==1.17.0 overrides six==1.16.0 of runtime 'data'" in log.lines
    assert "Runtime 'data': packages six==1.17.0, humanize==4.11.0" in log.lines


def test_the_operator_resolves_once_and_again_only_when_rendering_changed_an_argument(tmp_path: Path) -> None:
    from airflow_byo.operators.byo_flow import ByoFlowOperator

    operator = ByoFlowOperator(
        task_id="t", source=str(tmp_path), destination=str(tmp_path / "out"), processor=CODE
    )
    first = operator.flow
    assert operator.flow is first  # nothing recomputed per use
    templated = ByoFlowOperator(
        task_id="u",
        source=str(tmp_path),
        destination=str(tmp_path / "out"),
        processor=CODE,
        runtime_config={"job_config": {"timeout_seconds": "{{ params.t }}"}},
    )
    templated.runtime_config = {"job_config": {"timeout_seconds": 7}}  # as rendered
    assert templated.flow.job.timeout_seconds == 7


# -- one flow through every entry point --------------------------------------------------------------

ENTRY_POINTS = ["operator", "spec", "decorator", "airflow byo test", "byo script", "page"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, venv_cache: Path) -> dict[str, Any]:
    """One source, runtimes file and venv cache for the entry points (one environment build)."""
    root = tmp_path_factory.mktemp("entry-points")
    (root / "in").mkdir()
    (root / "in" / "a.csv").write_text("alpha\nbeta\n")
    reference = root / "reference"
    reference.mkdir()
    (root / "runtimes.yaml").write_text(RUNTIMES.format(reference=reference))
    (root / "code.py").write_text(CODE)
    return {"root": root, "cache": venv_cache / "entry-points", "sample": str(root / "in" / "a.csv")}


def _through(entry: str, shared: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What a test of the shared flow gives through ``entry``: the flow it ran and the previews."""
    root, sample = shared["root"], shared["sample"]
    if entry in ("operator", "spec", "decorator"):
        task = _task(entry, root)
        result = task.execute(context(test_file=sample))
        return result["flow"], result["preview"]
    if entry == "page":
        return _page(root, sample)
    arguments = ["--code", str(root / "code.py"), "--packages", PACKAGES, "--runtime", "data"]
    arguments += ["--runtime-config", json.dumps(RUNTIME_CONFIG), "-o", "json", sample]
    command = [str(Path(sys.executable).parent / ("byo" if entry == "byo script" else "airflow"))]
    command += ["test"] if entry == "byo script" else ["byo", "test"]
    done = subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=600, env=os.environ)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    return result["flow"], result["preview"]


def _task(entry: str, root: Path) -> Any:
    from airflow.sdk import DAG

    from airflow_byo.operators.byo_flow import ByoFlowOperator

    if entry == "spec":
        from airflow_byo.specs.factory import load_flow

        spec = root / "flow.yaml"
        processing = {"code": CODE, "packages": PACKAGES, "runtime": "data", "runtime_config": RUNTIME_CONFIG}
        spec.write_text(
            json.dumps(
                {
                    "name": "entry_spec",
                    "source": {"type": "local", "path": str(root / "in")},
                    "destination": {"type": "local", "path": str(root / "out")},
                    "schedule": "manual",
                    "processing": processing,
                }
            )
        )
        return load_flow(spec).dag.get_task("flow")
    arguments: dict[str, Any] = {
        "source": str(root / "in"),
        "destination": str(root / "out"),
        "packages": PACKAGES,
        "runtime": "data",
    }
    if entry == "operator":
        return ByoFlowOperator(task_id="flow", processor=CODE, runtime_config=RUNTIME_CONFIG, **arguments)
    from airflow.sdk import task

    namespace: dict[str, Any] = {}
    exec(compile(CODE, str(root / "code.py"), "exec"), namespace)  # a real module-level function
    with DAG("entry_decorator", schedule=None):
        runtime_config = {"job_config": RUNTIME_CONFIG["job_config"]}
        node = task.byo(runtime_config=runtime_config, **arguments)(namespace["process"])(suffix="!")
    return node.operator


def _page(root: Path, sample: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The page's Test of the operator flow, found in its serialized DAG as the api-server finds it."""
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_byo.operators.byo_flow import ByoFlowOperator
    from airflow_byo.plugins.flows import flows_of_dag
    from airflow_byo.plugins.testing import TestRequest, run_test

    with DAG("entry_page", schedule=None) as dag:
        ByoFlowOperator(
            task_id="flow",
            source=str(root / "in"),
            destination=str(root / "out"),
            processor=CODE,
            packages=PACKAGES,
            runtime="data",
            runtime_config=RUNTIME_CONFIG,
        )
    (flow,) = flows_of_dag(DagSerialization.to_dict(dag))
    request = TestRequest(
        code=CODE,
        function_name="process",
        test_file=Path(sample).name,
        packages=PACKAGES,
        runtime_config=RUNTIME_CONFIG,
    )
    deadline = time.monotonic() + 600  # a bound on the first build, not a measurement
    while (result := run_test(flow, request)).get("state") == "building":
        assert time.monotonic() < deadline, result
        time.sleep(0.5)
    assert result["ok"], result
    return result["flow"], result["previews"]


@pytest.mark.venv
def test_one_flow_gets_the_same_runtime_limits_sandbox_and_preview_from_every_entry_point(
    shared: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shared["root"]
    monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(root / "runtimes.yaml"))
    monkeypatch.setenv("AIRFLOW__BYO__VENV_CACHE_PATH", str(shared["cache"]))
    seen = {entry: _through(entry, shared) for entry in ENTRY_POINTS}
    flows = {entry: flow for entry, (flow, _) in seen.items()}
    expected = flows["operator"]
    assert expected["runtime"] == "data"
    assert expected["requirements"] == ["six==1.17.0", "humanize==4.11.0"]
    assert expected["job_config"]["timeout_seconds"] == 30  # the runtime's limit
    assert expected["job_config"]["preview_lines"] == 5  # the flow's own key
    assert expected["sandbox"]["read_only_paths"] == [str(root / "reference")]
    assert {entry: flow for entry, flow in flows.items() if flow != expected} == {}
    previews = {entry: previews for entry, (_, previews) in seen.items()}
    [preview] = previews["operator"]
    assert preview["rows"][0][:2] == ["alpha!", "1.17.0"]  # the flow's pin of six, in the child
    assert {entry: p for entry, p in previews.items() if p != previews["operator"]} == {}
    assert not (root / "out").exists()  # test mode writes nothing
