"""Flow specs: model, JSON Schema, error messages, the DAG factory, paused DAGs, the library."""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from airflow_byo import library
from airflow_byo.exceptions import ByoConfigError, ByoFlowSpecError, ByoProcessorError
from airflow_byo.specs.factory import build_dags, collect_flows
from airflow_byo.specs.loader import find_specs, fingerprint, load_spec
from airflow_byo.specs.model import SCHEMA_FILE, FlowSpec, json_schema
from tests.conftest import ROOT
from tests.conftest import run_airflow as airflow

EXAMPLE_SPEC = ROOT / "dags_examples" / "flows" / "customers_to_jsonl.yaml"
SCHEMA_PATH = ROOT / "airflow_byo" / "specs" / SCHEMA_FILE

VALID = """\
name: orders
source:
  type: local
  path: /data/in
processing:
  code: |
    def process(file, ctx):
        return "x"
destination:
  type: local
  path: /data/out
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_json_schema_is_in_sync_with_the_model() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == json_schema(), (
        "regenerate it: python -c 'from airflow_byo.specs.model import json_schema; ...'"
    )


def test_example_spec_round_trips_yaml_model_json_schema() -> None:
    spec = load_spec(EXAMPLE_SPEC)
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    jsonschema.validate(data, json_schema())
    dumped = json.loads(spec.model_dump_json(exclude_defaults=True))
    jsonschema.validate(dumped, json_schema())
    assert FlowSpec.model_validate(dumped) == spec
    assert spec.source.include == ["*.csv"]


def test_json_specs_work_too(tmp_path: Path) -> None:
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(yaml.safe_load(VALID)))
    assert load_spec(path).name == "orders"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("name: orders\n", "name: orders\nschedul: hourly\n"),
            r"x\.yaml:2: schedul: Extra inputs are not permitted\. Fix: did you mean 'schedule'\?",
        ),
        (
            ("  path: /data/in\n", "  path: /data/in\n  recursive: maybe\n"),
            r"x\.yaml:5: source\.recursive: Input should be a valid boolean",
        ),
        (
            ("name: orders\n", "name: orders\nschedule: '61 * * * *'\n"),
            r"x\.yaml:2: schedule: '61 \* \* \* \*' is not a schedule: use one of once",
        ),
        (
            ("  type: local\n  path: /data/in", "  type: ftp\n  path: /data/in"),
            r"x\.yaml:3: source\.type: Input should be 'local', 's3' or 'sftp'",
        ),
        (
            ("destination:", "  packages: 'p1=1.0.1'\ndestination:"),
            r"processing\.packages: .*Did you mean 'p1==1\.0\.1'",
        ),
        (
            ("destination:", "  runtime_config: {job_config: {timeout: 5}}\ndestination:"),
            r"processing\.runtime_config: job_config\.timeout: unknown key "
            r"\(did you mean 'timeout_seconds'\?\)",
        ),
        (
            ('    def process(file, ctx):\n        return "x"\n', "    x\n  function: clean@1\n"),
            r"processing: .*give exactly one of code, function or reference \(got code, function\)",
        ),
        (
            ("destination:\n  type: local\n  path: /data/out\n", ""),
            r"x\.yaml:1: destination: Field required\. Fix: add it",
        ),
    ],
)
def test_invalid_specs_name_file_line_field_and_fix(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in VALID
    path = write(tmp_path, "x.yaml", VALID.replace(old, new, 1))
    with pytest.raises(ByoFlowSpecError, match=message):
        load_spec(path)


def test_unknown_library_function_is_reported_by_the_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__FUNCTION_LIBRARY", str(tmp_path / "library"))
    flows = tmp_path / "flows"
    flows.mkdir()
    write(
        flows,
        "a.yaml",
        VALID.replace('  code: |\n    def process(file, ctx):\n        return "x"\n', "  function: nope@1\n"),
    )
    write(flows, "b.yaml", VALID.replace("name: orders", "name: other"))
    collection = collect_flows(find_specs(flows))
    assert list(collection.dags) == ["byo_flow__other"]
    assert collection.problems[flows / "a.yaml"].startswith(
        f"{flows}/a.yaml:6: processing.function: library function 'nope' does not exist"
    )


def test_factory_builds_paused_dags_with_sensor_and_flow() -> None:
    dags = build_dags(EXAMPLE_SPEC.parent)
    dag = dags["byo_flow__byo_spec_customers"]
    assert dag.is_paused_upon_creation is True
    assert sorted(dag.task_ids) == ["flow", "wait_for_new_files"]
    flow = dag.get_task("flow")
    assert flow.upstream_task_ids == {"wait_for_new_files"}
    assert flow.source == str((ROOT / "example_data" / "customers").resolve())
    assert list(dags) == ["byo_flow__byo_spec_customers"]


def test_library_versions_and_pinning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__FUNCTION_LIBRARY", str(tmp_path / "library"))
    first = library.save("clean", "def process(file, ctx):\n    return 'v1'\n", packages="unidecode==1.3.8")
    second = library.save("clean", "def process(file, ctx):\n    return 'v2'\n")
    assert (first.version, second.version) == (1, 2)
    assert library.list_functions() == {"clean": [1, 2]}
    assert library.get("clean").code.endswith("'v2'\n")
    assert library.get("clean@1").packages == ["unidecode==1.3.8"]
    flows = tmp_path / "flows"
    flows.mkdir()
    write(
        flows,
        "pinned.yaml",
        VALID.replace(
            '  code: |\n    def process(file, ctx):\n        return "x"\n', "  function: clean@1\n"
        ),
    )
    dag = build_dags(flows)["byo_flow__orders"]
    flow = dag.get_task("flow")
    assert "return 'v1'" in flow.processor_source.code
    assert flow.packages == ["unidecode==1.3.8"]
    with pytest.raises(ByoProcessorError, match=r"syntax error in processor code: .* \(line 1\)"):
        library.save("broken", "def process(file, ctx)\n    pass\n")
    with pytest.raises(ByoConfigError, match=r"is used by pinned\.yaml"):
        library.delete("clean@1", used_by=["pinned.yaml"])
    library.delete("clean@2")
    assert library.list_functions() == {"clean": [1]}


# -- a real parse by Airflow ------------------------------------------------------------------------


def json_lines(stdout: str) -> Any:
    """The JSON document of a CLI's output (Airflow may print warnings before it)."""
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("[")))


def test_real_parse_pauses_new_dags_and_reports_invalid_specs(
    tmp_path: Path, migrated_airflow_home: Path
) -> None:
    dags_folder = tmp_path / "dags"
    (dags_folder / "flows").mkdir(parents=True)
    shutil.copy(ROOT / "dags_examples" / "byo_flows_from_specs.py", dags_folder)
    write(dags_folder / "flows", "good.yaml", VALID.replace("name: orders", "name: good_flow"))
    write(
        dags_folder / "flows",
        "bad.yaml",
        VALID.replace("name: orders\n", "name: bad_flow\nschedul: hourly\n"),
    )
    env = os.environ | {
        "AIRFLOW_HOME": str(migrated_airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
    }
    # The first parse writes the bad spec's error DAG file, the second parses it (the dag-processor
    # finds it at its next bundle refresh); the factory's own file never has an import error.
    for _ in range(2):
        assert airflow("dags", "reserialize", env=env).returncode == 0

    errors = airflow("dags", "list-import-errors", "--output", "json", env=env)
    [error] = json_lines(errors.stdout)
    assert re.fullmatch(r"byo_spec_errors/bad_yaml_[0-9a-f]{8}\.py", error["filepath"])
    assert (
        f"{dags_folder}/flows/bad.yaml:2: schedul: Extra inputs are not permitted. Fix: did you mean "
        "'schedule'?" in error["error"]
    )

    listed = json_lines(airflow("dags", "list", "--output", "json", env=env).stdout)
    assert {d["dag_id"]: str(d["is_paused"]) for d in listed} == {"good_flow": "True"}

    assert airflow("dags", "unpause", "good_flow", env=env).returncode == 0
    listed = json_lines(airflow("dags", "list", "--output", "json", env=env).stdout)
    assert [str(d["is_paused"]) for d in listed] == ["False"]


def test_parsing_never_touches_connections_or_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Specs naming connections that do not exist still parse: nothing is looked up at parse time."""
    import airflow_byo.environment

    monkeypatch.setattr(airflow_byo.environment, "ensure_environment", _forbidden)
    flows = tmp_path / "flows"
    flows.mkdir()
    remote = VALID.replace(
        "  type: local\n  path: /data/in", "  type: s3\n  path: bucket/in\n  conn_id: not_defined_anywhere"
    )
    write(flows, "remote.yaml", remote.replace("destination:", "  packages: humanize==4.11.0\ndestination:"))
    dag = build_dags(flows)["byo_flow__orders"]
    assert dag.get_task("flow").source == "s3://bucket/in"


def _forbidden(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("no environment may be built at parse time")


def test_spec_notifications_become_channels_and_callbacks(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    spec = VALID + (
        "notifications:\n  channels: [{type: webhook, url: 'http://127.0.0.1:9/hook', levels: [error]}]\n"
        "  events: [succeeded, failed]\n  data_delay_minutes: 60\n"
    )
    write(flows, "n.yaml", spec)
    flow = build_dags(flows)["byo_flow__orders"].get_task("flow")
    assert [c.type for c in flow.notifications] == ["webhook"]
    assert [n.event for n in flow.on_success_callback] == ["succeeded", "data_delay"]
    assert [n.event for n in flow.on_failure_callback] == ["failed"]
    write(flows, "n.yaml", spec.replace("type: webhook, url: 'http://127.0.0.1:9/hook'", "type: pager"))
    with pytest.raises(
        ByoFlowSpecError, match=r"notifications\.channels: .*Channel types: webhook, email, slack, file"
    ):
        load_spec(flows / "n.yaml")


def _yaml_nodes() -> int:
    gc.collect()
    # type(), not isinstance(): isinstance reads __class__, which some lazy objects alive in the
    # process (the standard provider's) answer by importing a module that may not be installed
    return sum(1 for o in gc.get_objects() if issubclass(type(o), yaml.Node))


def test_a_folder_of_flows_keeps_no_yaml_node_trees(tmp_path: Path) -> None:
    """
    While the factory builds a folder's DAGs, every flow is alive at once: each keeps its DAG,
    its model and its file's fingerprint, not the node tree its errors were placed with (issue
    24: 1,000 specs held ~20 MB of node trees at the parse's peak).
    """
    for index in range(5):
        write(tmp_path, f"f{index}.yaml", VALID.replace("name: orders", f"name: orders_{index}"))
    before = _yaml_nodes()
    collection = collect_flows(find_specs(tmp_path))
    assert [flow.spec.name for flow in collection.flows] == [f"orders_{index}" for index in range(5)]
    assert _yaml_nodes() == before
    first = collection.flows[0]
    assert first.fingerprint == fingerprint((tmp_path / "f0.yaml").read_bytes())
