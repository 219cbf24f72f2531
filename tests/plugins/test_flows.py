"""How the page finds BYO flows in serialized DAGs and reads their code without running it."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_byo.plugins.flows import Flow, flows_of_dag, processor_code, redact_url

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"


@pytest.fixture(scope="module")
def serialized() -> dict[str, dict]:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    bag = DagBag(str(EXAMPLES))
    assert not bag.import_errors
    return {dag_id: DagSerialization.to_dict(dag) for dag_id, dag in bag.dags.items()}


def _flow(serialized: dict[str, dict], dag_id: str) -> Flow:
    (flow,) = flows_of_dag(serialized[dag_id])
    return flow


def test_every_style_of_flow_is_found_with_its_settings(serialized):
    flows = {f.key: f for data in serialized.values() for f in flows_of_dag(data)}
    assert {
        "byo_customers_csv_to_jsonl/clean_customers": "operator",
        "byo_decorator_orders/totals_by_sku": "decorator",
        "byo_spec_customers/flow": "spec",
    }.items() <= {k: f.style for k, f in flows.items()}.items()
    # sensors and planners are not flows
    assert all(not key.endswith(("wait_for_new_files", "plan_batches")) for key in flows)
    operator = flows["byo_customers_csv_to_jsonl/clean_customers"]
    assert operator.settings["packages"] == "unidecode==1.3.8"
    assert operator.settings["runtime_config"]["source_system"] == "crm-export"
    assert operator.flow_id == "byo_customers_csv_to_jsonl.clean_customers"
    assert (operator.ledger_conn_id, operator.runtime, operator.templated_ledger) == (None, None, {})
    # the spec factory passes flow_id=f"{spec.name}.flow" explicitly: it is serialized
    spec = flows["byo_spec_customers/flow"]
    assert spec.settings["flow_id"] == spec.flow_id == "byo_spec_customers.flow"


def serialized_flows(source: str = "/srv/in", **arguments: dict) -> dict[str, Flow]:
    """The flows of a DAG ``ledgers``, one per task id of ``arguments``, through Airflow's serialization."""
    from datetime import datetime

    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_byo.operators.byo_flow import ByoFlowOperator

    with DAG("ledgers", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        for task_id, kwargs in arguments.items():
            ByoFlowOperator(
                task_id=task_id,
                source=source,
                destination="/srv/out",
                processor="def process(file, ctx):\n    return 1\n",
                emit_asset_event=False,
                **kwargs,
            )
    return {f.task_id: f for f in flows_of_dag(DagSerialization.to_dict(dag))}


def test_the_flows_own_ledger_runtime_and_interpreter_are_read_from_the_serialized_dag():
    flows = serialized_flows(
        own={"flow_id": "orders.clean", "ledger_conn_id": "orders_ledger", "runtime": "default"},
        interpreter={"python_interpreter": "/usr/bin/python3", "allow_direct_urls": True},
        plain={},
        templated={"flow_id": "{{ dag.dag_id }}.x", "ledger_conn_id": "{{ var.value.ledger }}"},
    )
    own = flows["own"]
    assert (own.flow_id, own.ledger_conn_id, own.runtime) == ("orders.clean", "orders_ledger", "default")
    assert (own.python_interpreter, own.allow_direct_urls, own.templated_ledger) == (None, False, {})
    interpreter = flows["interpreter"]
    assert (interpreter.python_interpreter, interpreter.allow_direct_urls) == ("/usr/bin/python3", True)
    plain = flows["plain"]
    assert (plain.flow_id, plain.ledger_conn_id, plain.runtime) == ("ledgers.plain", None, None)
    assert flows["templated"].templated_ledger == {
        "flow_id": "{{ dag.dag_id }}.x",
        "ledger_conn_id": "{{ var.value.ledger }}",
    }


def test_operator_processor_is_read_from_the_dag_source_without_running_it(serialized):
    flow = _flow(serialized, "byo_customers_csv_to_jsonl")
    code = processor_code(flow, None, (EXAMPLES / "byo_customers_csv_to_jsonl.py").read_text())
    assert code.function_name == "clean_customers"
    assert code.code.startswith('def clean_customers(file, ctx, *, default_country="NL"):')
    compile(code.code, "<processor>", "exec")


def test_decorated_function_is_dedented_and_undecorated(serialized):
    flow = _flow(serialized, "byo_decorator_orders")
    code = processor_code(flow, None, (EXAMPLES / "byo_decorator_orders.py").read_text())
    assert code.function_name == "totals_by_sku"
    assert code.code.startswith("def totals_by_sku(file, ctx, currency):")
    compile(code.code, "<processor>", "exec")


def test_spec_processor_comes_from_the_spec_file(serialized):
    flow = _flow(serialized, "byo_spec_customers")
    assert flow.spec_file
    code = processor_code(flow, str(EXAMPLES / "byo_flows_from_specs.py"), None)
    assert code.problem is None, code.problem
    assert "def process(file, ctx" in code.code
    assert code.runtime_config == {
        "custom_code": {"kwargs": {"country": "NL"}},
        "job_config": {"timeout_seconds": 60},
    }


def test_inline_code_reference_and_computed_processors():
    flow = Flow("d", "t", "operator", {}, {})
    inline = processor_code(
        flow,
        None,
        'ByoFlowOperator(task_id="t", function_name="run",\n'
        '                processor="def run(file, ctx):\\n    return 1\\n")',
    )
    assert (inline.code, inline.function_name) == ("def run(file, ctx):\n    return 1\n", "run")
    ref = processor_code(flow, None, 'ByoFlowOperator(task_id="t", processor="my.module:process")')
    assert ref.reference == "my.module:process"
    assert ref.code is None
    computed = processor_code(flow, None, 'ByoFlowOperator(task_id="t", processor=make())')
    assert computed.code is None
    assert "computed" in computed.problem
    broken = processor_code(flow, None, "def (")
    assert "does not parse" in broken.problem


def test_urls_never_show_credentials():
    assert redact_url("sftp://user:s3cret@host/in") == "sftp://***@host/in"
    assert redact_url("s3://bucket/prefix") == "s3://bucket/prefix"


def _page_flows(serialized: dict[str, dict]) -> dict[str, Flow]:
    from airflow_byo.plugins.page_data import _flows_with_arguments

    return {f.key: f for data in serialized.values() for f in _flows_with_arguments(data)}


def test_a_mapped_flow_has_its_partial_arguments_and_says_which_task_sets_its_files(serialized):
    flows = _page_flows(serialized)
    (plain,) = flows_of_dag(serialized["byo_customers_in_batches"])
    assert plain.settings.get("source") is None  # what the page showed as "None -> None"
    batched = flows["byo_customers_in_batches/clean"]
    assert batched.settings["source"].endswith("example_data/customers")
    assert batched.settings["destination"].endswith("customers_batched")
    assert batched.settings["include"] == ["*.csv"]
    assert batched.flow_id == "byo_customers_in_batches.clean"
    assert batched.settings["files_from"] == "plan_batches"
    assert "files_from" not in flows["byo_customers_csv_to_jsonl/clean_customers"].settings
    # an unmapped flow given a planner's files (files=plan.output)
    assert _page_flows({"x": _planned_dag()})["planned/flow"].settings["files_from"] == "plan"


def _planned_dag() -> dict:
    from datetime import datetime

    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_byo.operators.byo_flow import ByoFlowOperator
    from airflow_byo.operators.plan_batches import ByoBatchPlanOperator

    with DAG("planned", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        plan = ByoBatchPlanOperator(task_id="plan", source="/srv/in", flow_id="planned.flow")
        ByoFlowOperator(
            task_id="flow",
            source="/srv/in",
            destination="/srv/out",
            processor="def process(file, ctx):\n    return 1\n",
            files=plan.output,
            emit_asset_event=False,
        )
    return DagSerialization.to_dict(dag)


def test_schedules_read_as_users_mean_them(serialized):
    from types import SimpleNamespace

    from airflow_byo.plugins.page_data import schedule_text

    flows = _page_flows(serialized)
    assert schedule_text(flows["byo_customers_csv_to_jsonl/clean_customers"], None) == "manual"
    assert schedule_text(flows["byo_customers_on_new_files/to_jsonl"], None) == "on new files"
    assert schedule_text(flows["byo_spec_customers/flow"], None) == "0 * * * *"
    hourly = SimpleNamespace(timetable_summary="@hourly")
    assert schedule_text(flows["byo_spec_customers/flow"], hourly) == "@hourly"
    none = SimpleNamespace(timetable_summary="None")
    assert schedule_text(Flow("d", "t", "operator", {}, {}), none) == "manual"


def test_only_specs_of_the_spec_folder_are_editable(serialized, tmp_path, monkeypatch):
    from airflow_byo.plugins.page_data import editable_spec

    spec = _page_flows(serialized)["byo_spec_customers/flow"]
    assert not editable_spec(spec, None)  # no [byo] spec_folder: nothing is edited on the page
    monkeypatch.setenv("AIRFLOW__BYO__SPEC_FOLDER", str(EXAMPLES / "flows"))
    assert editable_spec(spec, str(EXAMPLES / "byo_flows_from_specs.py"))
    monkeypatch.setenv("AIRFLOW__BYO__SPEC_FOLDER", str(tmp_path))
    assert not editable_spec(spec, str(EXAMPLES / "byo_flows_from_specs.py"))
    assert not editable_spec(_page_flows(serialized)["byo_customers_csv_to_jsonl/clean_customers"], None)
