"""The page's templates render every kind of flow, escape what users wrote, show no secrets."""

from __future__ import annotations

from airflow_byo.plugins import render

FLOW = {
    "dag_id": "d<script>",
    "task_id": "flow",
    "flow_id": "d.flow",
    "style": "operator",
    "active": False,
    "schedule": "@hourly",
    "source": "sftp://***@host/in",
    "source_conn_id": "sftp_conn",
    "destination": "/out",
    "destination_conn_id": None,
    "packages": "unidecode==1.3.8",
    "description": None,
    "tags": [],
    "last_run": None,
    "dag_url": "/dags/d",
    "settings": {"source": "sftp://***@host/in"},
    "processor": {
        "code": "def process(file, ctx):\n    return '<b>'\n",
        "function_name": "process",
        "packages": "unidecode==1.3.8",
        "reference": None,
        "origin": "function process of the DAG file",
        "problem": None,
        "runtime_config": {"job_config": {"timeout_seconds": 5}},
    },
    "runs": [
        {
            "run_id": "r1",
            "state": "success",
            "run_after": None,
            "end_date": "2024-01-01T00:00:00",
            "files_processed": 2,
            "files_failed": 1,
            "files_quarantined": 0,
            "records_out": 5,
            "insights": {},
        }
    ],
    "ledger": {"counts": {"done": 2}, "problems": [{"path": "a.csv", "state": "quarantined", "error": "x"}]},
}


def _page(template: str, **context) -> str:
    return render.page(template, nonce="n", base="/byo", user="u", **context)


def test_flow_page_for_editors_and_viewers():
    editor = _page("flow.html", flow=FLOW, can_edit=True)
    assert 'id="test-button"' in editor
    assert 'class="replay"' in editor
    assert "<script>" not in editor.split("<body>")[1].split("<script nonce")[0]  # escaped
    assert "d&lt;script&gt;" in editor
    assert 'class="chart"' in editor
    viewer = _page(
        "flow.html",
        flow=FLOW | {"processor": FLOW["processor"] | {"code": None, "problem": "no"}},
        can_edit=False,
    )
    assert 'id="test-button"' not in viewer
    assert 'class="replay"' not in viewer
    assert "testing and saving need edit access" in viewer


def test_flows_and_library_pages():
    flows = _page("flows.html", flows=[FLOW | {"last_run": FLOW["runs"][0]}])
    assert "1 failed" in flows
    assert _page("flows.html", flows=[]).count("No BYO flows yet")
    fn = {
        "name": "f",
        "versions": [1, 2],
        "latest": "f@2",
        "description": "",
        "packages": [],
        "used_by": {"f@2": [{"dag_id": "d", "task_id": "t"}]},
    }
    library = _page("library.html", functions=[fn])
    assert "v2" in library
    assert "/byo/flows/d/t" in library


def test_flow_page_names_its_runtime_and_ledger_or_why_it_has_none():
    own = FLOW | {"runtime": "pandas", "ledger_conn_id": "orders_ledger", "flow_id": "orders.clean"}
    html = _page("flow.html", flow=own, can_edit=True)
    assert '<dd id="runtime">pandas' in html
    assert '<code>orders.clean</code> in connection <span class="conn">orders_ledger</span>' in html
    assert 'data-count="done">done: 2<' in html
    assert 'data-path="a.csv"' in html
    assert '<dd id="runtime">default' in _page("flow.html", flow=FLOW, can_edit=False)
    error = "the page cannot tell which ledger flow d/flow uses: its flow_id='{{ x }}' ..."
    unresolved = _page(
        "flow.html", flow=FLOW | {"ledger": {"counts": {}, "problems": [], "error": error}}, can_edit=True
    )
    assert "the page cannot tell which ledger" in unresolved
    assert 'id="ledger-counts"' not in unresolved  # no zeros that look like counts
