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


def test_the_flows_listing_says_what_each_setting_means():
    batched = FLOW | {
        "dag_id": "batched",
        "schedule": "manual",
        "source": None,
        "source_conn_id": None,
        "destination": None,
        "files_from": "plan_batches",
    }
    templated = FLOW | {
        "dag_id": "templated",
        "source": "{{ params.src }}",
        "source_conn_id": None,
        "description": "Nightly",
    }
    html = _page("flows.html", flows=[batched, templated])
    row = html.split('data-dag-id="batched"')[1].split("</tr>")[0]
    assert '<td class="schedule">manual</td>' in row
    assert "set by plan_batches" in row
    assert "None" not in row
    assert "{{ params.src }}</span>" not in html  # the template is shown as configured, escaped once
    assert '{{ params.src }} <span class="muted">(templated)</span>' in html
    assert '<div class="muted small">operator · Nightly</div>' in html
    assert '<div class="muted small">operator</div>' in row  # no stray "·" without a description


def test_activate_edit_and_copy_are_offered_to_whoever_may_use_them():
    spec = FLOW | {"dag_id": "s", "style": "spec", "editable_spec": True, "can_edit": True}
    operator = FLOW | {"dag_id": "o", "can_edit": True, "active": True}
    viewer = FLOW | {"dag_id": "v", "style": "spec", "editable_spec": True, "can_edit": False}
    html = _page("flows.html", flows=[spec, operator, viewer])
    rows = {name: html.split(f'data-dag-id="{name}" data-task-id')[1].split("</tr>")[0] for name in "sov"}
    assert (
        '<button type="button" class="activation small" data-dag-id="s" data-paused="true">Activate</button>'
        in rows["s"]
    )
    assert 'data-paused="false">Pause</button>' in rows["o"]
    assert "activation" not in rows["v"]  # a viewer sees the state only
    assert '<a class="edit-spec" href="/byo/specs/s/edit">Edit</a>' in rows["s"]
    assert "edit-spec" not in rows["v"]
    assert '<a class="copy-flow" href="/byo/new?copy=o/flow">Copy as a new spec flow</a>' in rows["o"]
    assert "copy-flow" not in rows["s"]
    assert '<a href="/byo/new" class="button primary" id="new-flow">New flow</a>' in html
    assert '"airflowApi": "/api/v2"' in html.replace("airflowApi: ", '"airflowApi": ')


def test_the_flow_page_shows_each_runs_insights_counters_and_notifications():
    run = FLOW["runs"][0] | {
        "insights": {"skus": 3, "top": ["a", "b"]},
        "counters": {"records_in": 7},
        "notifications": 2,
    }
    html = _page("flow.html", flow=FLOW | {"runs": [run], "can_edit": True}, can_edit=True)
    facts = html.split('<tr class="run-facts">')[1].split("</tr>")[0]
    assert '<dd class="insight" data-key="skus">3</dd>' in facts
    assert '<dd class="insight" data-key="top">[&#34;a&#34;, &#34;b&#34;]</dd>' in facts
    assert '<dd class="counter" data-key="records_in">7</dd>' in facts
    assert "2 sent by the function" in facts
    about = html.split('id="flow-about">')[1].split("</p>")[0]
    assert about.startswith("operator flow · ")  # no description: no leading "·"
    assert 'id="cancel-button" hidden' in html
    assert 'id="test-elapsed"' in html
    quiet = _page("flow.html", flow=FLOW, can_edit=True)
    assert "run-facts" not in quiet


def test_the_runs_chart_has_axes_labels_and_a_legend():
    runs = [
        {
            "run_id": "r2",
            "state": "failed",
            "end_date": "2024-01-02T10:30:00",
            "files_processed": 3,
            "files_failed": 1,
        },
        {"run_id": "r1", "state": "success", "end_date": "2024-01-01T09:00:00", "files_processed": 8},
    ]
    svg = str(render.chart(runs))
    assert svg.count('class="axis"') == 2
    assert ">files</text>" in svg  # the y axis' title
    assert [f'text-anchor="end">{tick}</text>' in svg for tick in (0, 4, 8)] == [True] * 3
    assert ">01-01 09:00</text>" in svg
    assert ">01-02 10:30</text>" in svg  # the first and the last run's dates
    assert "runs, oldest left (2)" in svg
    assert [label in svg for label in ("files processed", "failed or quarantined", "run state")] == [True] * 3
    assert "<title>r2: 3 processed, 1 failed/quarantined (failed)</title>" in svg
    assert str(render.chart([])) == '<p class="muted">No runs yet.</p>'
