"""
The BYO Flows page on the real deployment: the plugin is served by the api-server, every route
authenticates through the simple auth manager with real JWTs, and a real headless Chromium runs
the whole loop (log in, open the page, Test, syntax error, Save, Activate and Pause on the page),
a user's second Test queued behind the first and Cancel, and a flow page's runs.

Screenshots of each browser step are kept in ``tests/e2e/artifacts/ui/`` (``BYO_UI_SCREENSHOTS``
overrides the folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.deployment import Deployment

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"
SCREENSHOTS = Path(os.environ.get("BYO_UI_SCREENSHOTS", Path(__file__).parent / "artifacts" / "ui"))
OPERATOR_FLOW = ("byo_customers_csv_to_jsonl", "clean_customers")
DECORATOR_FLOW = ("byo_decorator_orders", "totals_by_sku")
SPEC_FLOW = ("byo_spec_customers", "flow")
SECRET_FLOW = ("byo_ui_secret_conn", "flow")
SECRET = "TOPSECRET-ui-7f3a"
SECRET_DAG = f'''
from datetime import datetime
from airflow.sdk import DAG
from airflow_byo.operators.byo_flow import ByoFlowOperator

with DAG("{SECRET_FLOW[0]}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    ByoFlowOperator(task_id="flow", source="sftp:///upload/in", source_conn_id="byo_ui_sftp",
                    destination="/tmp/byo-ui-out", emit_asset_event=False,
                    processor="def process(file, ctx):\\n    return file.name\\n")
'''
BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def ui(deployment: Deployment) -> Deployment:
    """The deployment with the example flows (operator, decorator, spec) and a flow with a secret."""
    for name in ("byo_customers_csv_to_jsonl.py", "byo_decorator_orders.py", "byo_flows_from_specs.py"):
        deployment.write_dag_file(name, (EXAMPLES / name).read_text())
    shutil.copytree(EXAMPLES / "flows", deployment.dags_folder / "flows", dirs_exist_ok=True)
    # Beside the DAGs folder, where the examples look for it (the path policy refuses it inside).
    shutil.copytree(
        EXAMPLES.parent / "example_data", deployment.dags_folder.parent / "example_data", dirs_exist_ok=True
    )
    deployment.add_connection(
        "byo_ui_sftp",
        {"conn_type": "sftp", "host": "127.0.0.1", "port": 1, "login": "ui", "password": SECRET},
    )
    deployment.write_dag_file("byo_ui_secret_conn.py", SECRET_DAG)
    for dag_id in (OPERATOR_FLOW[0], DECORATOR_FLOW[0], SPEC_FLOW[0], SECRET_FLOW[0]):
        deployment.wait_for_dag(dag_id, timeout=180)
    return deployment


def _http(ui: Deployment, user: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {ui.token(user)}"} if user else {}
    return httpx.Client(base_url=ui.api_url, headers=headers, timeout=300)


def _path(flow: tuple[str, str], tail: str = "") -> str:
    return f"/byo/api/flows/{flow[0]}/{flow[1]}{tail}"


def _test_until_done(client: httpx.Client, flow: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """POST test, repeated while the flow's environment is built the first time; then its answer."""
    deadline = time.monotonic() + 600
    while True:
        response = client.post(_path(flow, "/test"), json=body)
        assert response.status_code == 200, response.text
        result = response.json()
        while result.get("state") in ("queued", "running"):  # asked again until done
            result = client.get(f"/byo/api/tests/{result['test_id']}").json()
        if result.get("state") != "building":
            return result
        assert time.monotonic() < deadline, result
        time.sleep(1)


@pytest.fixture(scope="module")
def decorator_run(ui: Deployment) -> str:
    """One finished run of the decorator flow (its summary has insights and counters)."""
    dag_id = DECORATOR_FLOW[0]
    ui.unpause(dag_id)
    try:
        run_id = ui.trigger(dag_id)
        ui.wait_for_run(dag_id, run_id, timeout=400)
    finally:
        ui.pause(dag_id)
    return run_id


# -- the plugin ------------------------------------------------------------------------------------


def test_plugin_is_listed_with_its_view_and_app(ui):
    plugins = ui.client("viewer").get("/api/v2/plugins")["plugins"]
    (plugin,) = [p for p in plugins if p["name"] == "byo_flows"]
    (view,) = plugin["external_views"]
    assert (view["url_route"], view["href"], view["destination"]) == ("byo-flows", "/byo/", "nav")
    assert [(a["url_prefix"], a["name"]) for a in plugin["fastapi_apps"]] == [("/byo", "BYO Flows")]
    errors = ui.client("admin").get("/api/v2/plugins/importErrors")["import_errors"]
    assert not [e for e in errors if "airflow_byo" in str(e)], errors


# -- authentication and authorization on every route ---------------------------------------------

READS = [
    "/byo/",
    f"/byo/flows/{OPERATOR_FLOW[0]}/{OPERATOR_FLOW[1]}",
    "/byo/library",
    "/byo/static/byo.js",
    "/byo/api/flows",
    _path(OPERATOR_FLOW),
    _path(OPERATOR_FLOW, "/files"),
    "/byo/api/functions",
]
WRITES = {
    _path(OPERATOR_FLOW, "/test"): {"code": "def process(file, ctx):\n    return 1\n", "test_file": "x.csv"},
    _path(OPERATOR_FLOW, "/environment"): {"packages": ""},
    _path(OPERATOR_FLOW, "/functions"): {
        "name": "ui_auth_probe",
        "code": "def process(file, ctx):\n    pass\n",
    },
    _path(OPERATOR_FLOW, "/replay"): {"path": "nothing-*.csv"},  # a literal name, not a glob
}


@pytest.mark.parametrize("path", READS)
def test_reads_need_a_user_and_dag_read_access(ui, path):
    with _http(ui, None) as anonymous, _http(ui, "viewer") as viewer:
        assert anonymous.get(path).status_code == 401
        bad = httpx.get(f"{ui.api_url}{path}", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
        assert bad.status_code in (401, 403)
        assert viewer.get(path).status_code == 200, viewer.get(path).text
    # the UI's own cookie works the same way as the header
    cookie = httpx.get(f"{ui.api_url}{path}", cookies={"_token": ui.token("viewer")}, timeout=60)
    assert cookie.status_code == 200


@pytest.mark.parametrize("path", list(WRITES))
def test_actions_need_dag_edit_access_and_a_json_body(ui, path):
    body = WRITES[path]
    with _http(ui, None) as anonymous, _http(ui, "viewer") as viewer, _http(ui, "user") as editor:
        assert anonymous.post(path, json=body).status_code == 401
        assert viewer.post(path, json=body).status_code == 403
        # a cross-site form post (the cookie would come along) is refused before anything runs
        form = httpx.post(f"{ui.api_url}{path}", data=body, cookies={"_token": ui.token("user")}, timeout=60)
        assert form.status_code == 415, form.text
        assert (
            editor.post(path, content=b"[1, 2]", headers={"Content-Type": "application/json"}).status_code
            == 400
        )
        ok = editor.post(path, json=body)
        assert ok.status_code in (200, 201), ok.text
    if path.endswith("/functions"):
        assert ok.json()["ref"].startswith("ui_auth_probe@")


def test_unknown_flows_and_other_tasks_are_404(ui):
    with _http(ui, "admin") as admin:
        assert admin.get("/byo/api/flows/byo_spec_customers/wait_for_new_files").status_code == 404
        assert admin.get("/byo/flows/no_such_dag/flow").status_code == 404


# -- what the pages show -------------------------------------------------------------------------


def test_flows_of_every_style_with_state_settings_and_last_run(ui, decorator_run):
    dag_id, task_id = DECORATOR_FLOW
    run_id = decorator_run
    with _http(ui, "viewer") as viewer:
        flows = {(f["dag_id"], f["task_id"]): f for f in viewer.get("/byo/api/flows").json()}
        assert {OPERATOR_FLOW, DECORATOR_FLOW, SPEC_FLOW, SECRET_FLOW} <= set(flows)
        assert {flows[k]["style"] for k in (OPERATOR_FLOW, DECORATOR_FLOW, SPEC_FLOW)} == {
            "operator",
            "decorator",
            "spec",
        }
        assert flows[SPEC_FLOW]["schedule"] in ("@hourly", "0 * * * *")
        assert (flows[OPERATOR_FLOW]["schedule"], flows[DECORATOR_FLOW]["schedule"]) == ("manual", "manual")
        assert not flows[SPEC_FLOW]["active"]
        assert not any(f["can_edit"] for f in flows.values())  # a viewer may not activate
        assert flows[OPERATOR_FLOW]["packages"] == "unidecode==1.3.8"
        last = flows[DECORATOR_FLOW]["last_run"]
        assert (last["run_id"], last["state"], last["files_processed"], last["files_failed"]) == (
            run_id,
            "success",
            2,
            0,
        )
        detail = viewer.get(_path(DECORATOR_FLOW)).json()
        assert detail["processor"]["code"].startswith("def totals_by_sku(file, ctx, currency):")
        assert detail["runs"][0]["insights"]["skus"] >= 1
        assert detail["ledger"]["counts"].get("done") == 2
        assert viewer.get(_path(DECORATOR_FLOW, "/files")).json()["new"] == 0
        spec = viewer.get(_path(SPEC_FLOW)).json()
        assert "def process(file, ctx" in spec["processor"]["code"], spec["processor"]
        page = viewer.get(f"/byo/flows/{dag_id}/{task_id}").text
        assert "totals_by_sku" in page
        assert 'class="chart"' in page
        assert "testing and saving need edit access" in page  # a viewer gets no Test panel


def test_no_connection_secret_is_ever_rendered(ui):
    with _http(ui, "admin") as admin:
        bodies = [admin.get(path).text for path in READS if "static" not in path]
        bodies += [admin.get(_path(SECRET_FLOW)).text, admin.get(f"/byo/flows/{SECRET_FLOW[0]}/flow").text]
        bodies.append(admin.post(_path(SECRET_FLOW, "/test"), json={"code": "x", "test_file": "a"}).text)
    assert all(SECRET not in body for body in bodies)
    assert any("byo_ui_sftp" in body for body in bodies)  # the conn id is shown, its password never


# -- the test loop over HTTP -----------------------------------------------------------------------


def test_test_runs_the_flows_code_on_a_source_file_and_is_fast_when_warm(ui):
    with _http(ui, "user") as editor:
        detail = editor.get(_path(OPERATOR_FLOW)).json()
        code = detail["processor"]
        body = {
            "code": code["code"],
            "function_name": code["function_name"],
            "packages": code["packages"],
            "runtime_config": code["runtime_config"],
            "test_file": "customers_2024-05-01.csv",
        }
        began = time.monotonic()
        first = _test_until_done(editor, OPERATOR_FLOW, body)
        ui.timings["ui test (cold: environment built)"] = time.monotonic() - began
        assert first["ok"], first
        assert first["packages"] == ["unidecode==1.3.8"]
        assert first["sandbox"] in ("bubblewrap", "off")
        assert '"source_system": "crm-export"' in first["previews"][0]["lines"][0]
        assert first["insights"]["last_file"]["name"] == "customers_2024-05-01.csv"
        warm = []
        for _ in range(3):
            began = time.monotonic()
            result = _test_until_done(editor, OPERATOR_FLOW, body)
            warm.append(time.monotonic() - began)
            assert result["ok"], result
        ui.timings["ui test (warm, best of 3)"] = min(warm)
        outside = editor.post(_path(OPERATOR_FLOW, "/test"), json=body | {"test_file": "/etc/passwd"}).json()
        assert not outside["ok"]
        assert "not a file of the flow's source" in outside["error"]
        broken = body | {"code": code["code"].replace("kept = rejected = 0", "kept = = 0")}
        syntax = editor.post(_path(OPERATOR_FLOW, "/test"), json=broken).json()
        line = code["code"].splitlines().index("    kept = rejected = 0") + 1
        assert (syntax["ok"], syntax["error_line"]) == (False, line), syntax


# -- a real browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser_page(ui):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed (./dev installs it)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="byo-ui-chromium-")
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path="/usr/bin/chromium",
            headless=True,
            args=BROWSER_FLAGS,
            viewport={"width": 1440, "height": 1000},
        )
        context.set_default_timeout(60_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


def test_browser_loop_test_error_save_activate(ui, browser_page):
    page = browser_page
    dag_id = OPERATOR_FLOW[0]
    _log_in(page, ui, "user")
    # the BYO Flows page inside Airflow's UI
    page.goto(f"{ui.api_url}/plugin/byo-flows")
    frame = page.frame_locator("iframe")
    row = frame.locator(f'tr[data-dag-id="{dag_id}"]')
    row.wait_for()
    assert row.locator("[data-state]").inner_text() == "paused"
    _shot(page, "1-flows")
    row.locator("a.flow-link").click()
    frame.locator("#test-panel").wait_for()
    assert "def clean_customers(file, ctx" in frame.locator("#processor-code").inner_text()
    _shot(page, "2-flow")
    # Test on a bundled sample file
    frame.locator("#test-file").fill("customers_2024-05-01.csv")
    frame.locator("#test-button").click()
    status = frame.locator("#test-status")
    status.filter(has_text="Tested in").wait_for(timeout=600_000)
    preview = frame.locator("#test-result").inner_text()
    assert "crm-export" in preview
    assert "customers_2024-05-01.csv" in preview
    frame.locator("#test-button").click()  # warm
    status.filter(has_text="Tested in").wait_for()
    ui.timings["browser Test click (warm)"] = float(status.get_attribute("data-seconds") or "nan")
    frame.locator("#test-result").scroll_into_view_if_needed()
    _shot(page, "3-test-preview")
    # a syntax error: the user's line is marked in the editor
    editor = frame.locator("#code")
    code = editor.input_value()
    line = code.splitlines().index("    kept = rejected = 0") + 1
    editor.fill(code.replace("kept = rejected = 0", "kept = = 0"))
    frame.locator("#test-button").click()
    frame.locator("#test-error").wait_for()
    assert frame.locator("#gutter .error-line").inner_text() == str(line)
    assert f"line {line}" in frame.locator("#test-error").inner_text()
    frame.locator("#editor").scroll_into_view_if_needed()
    _shot(page, "4-syntax-error")
    # fixed, saved as a reusable function: the new version is shown
    editor.fill(code)
    frame.locator("#function-save-name").fill("clean_customers_ui")
    frame.locator("#save-button").click()
    saved = frame.locator("#save-status.ok")
    saved.wait_for()
    ref = saved.get_attribute("data-ref")
    assert ref is not None
    assert ref.startswith("clean_customers_ui@")
    assert saved.inner_text() in (f"Saved {ref}", f"Unchanged, still {ref}")  # a rerun saved it before
    _shot(page, "5-saved")
    frame.locator("#save-button").click()  # the same code again: no second version
    frame.locator("#save-status", has_text=f"Unchanged, still {ref}").wait_for()
    page.goto(f"{ui.api_url}/byo/library")
    assert page.locator('tr[data-function="clean_customers_ui"]').inner_text().count(f"v{ref.split('@')[1]}")
    # Activate on the Flows page (Airflow's own PATCH /api/v2/dags, the user's session): the row
    # says so at once, and Airflow's API agrees
    page.goto(f"{ui.api_url}/plugin/byo-flows")
    frame = page.frame_locator("iframe")
    row = frame.locator(f'tr[data-dag-id="{dag_id}"]')
    row.locator("button.activation", has_text="Activate").click()
    try:
        row.locator("[data-state]", has_text="active").wait_for()
        assert row.locator("button.activation").inner_text() == "Pause"
        assert not ui.dag(dag_id)["is_paused"]
        page.wait_for_timeout(300)  # let the frame paint before the screenshot
        _shot(page, "6-flows-activated")
        # Pause on the flow's own page
        row.locator("a.flow-link").click()
        header = frame.locator("h1 .activation-cell")
        header.locator("button.activation", has_text="Pause").click()
        header.locator("[data-state]", has_text="paused").wait_for()
        assert ui.dag(dag_id)["is_paused"]
        _shot(page, "7-flow-paused")
    finally:
        ui.pause(dag_id)


def _log_in(page: Any, ui: Deployment, user: str) -> None:
    """Log in through the simple auth manager's own form."""
    page.goto(f"{ui.api_url}/auth/login")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(ui.passwords[user])
    page.locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)


ENDLESS = "import time\n\ndef clean_customers(file, ctx, **kwargs):\n    time.sleep(3600)\n"


def test_browser_a_users_second_test_waits_and_cancel_kills_the_first(ui, browser_page):
    first = browser_page
    _log_in(first, ui, "user")
    flow_url = f"{ui.api_url}/byo/flows/{OPERATOR_FLOW[0]}/{OPERATOR_FLOW[1]}"
    first.goto(flow_url)
    first.locator("#code").fill(ENDLESS)
    first.locator("#test-file").fill("customers_2024-05-01.csv")
    first.locator("#test-button").click()
    first.locator("#test-status[data-state=running]").wait_for(timeout=600_000)
    first.locator("#cancel-button").wait_for()
    first.locator("#test-elapsed", has_text=" s").wait_for()  # the counter runs
    second = first.context.new_page()  # the same user in another tab
    try:
        second.goto(flow_url)
        second.locator("#test-file").fill("customers_2024-05-01.csv")
        second.locator("#test-button").click()
        queued = second.locator("#test-status[data-state=queued]")
        queued.wait_for()
        assert "Queued: position 1" in queued.inner_text()
        _shot(second, "8-second-test-queued")
        first.locator("#cancel-button").click()
        first.locator("#test-status", has_text="Cancelled after").wait_for()
        error = first.locator("#test-error").inner_text()
        assert "Test cancelled by user after" in error
        assert "its process was killed" in error
        _shot(first, "9-test-cancelled")
        # the first Test's child is gone: the user's slot is free, and the second Test runs
        second.locator("#test-status", has_text="Tested in").wait_for(timeout=120_000)
        assert "crm-export" in second.locator("#test-result").inner_text()
    finally:
        second.close()


def test_browser_flow_page_shows_each_runs_insights_and_a_labelled_chart(ui, browser_page, decorator_run):
    page = browser_page
    _log_in(page, ui, "viewer")
    page.goto(f"{ui.api_url}/byo/flows/{DECORATOR_FLOW[0]}/{DECORATOR_FLOW[1]}")
    run = page.locator(f'tr.run[data-run-id="{decorator_run}"]')
    run.wait_for()
    facts = page.locator("tr.run-facts").first
    assert int(facts.locator('dd.insight[data-key="skus"]').inner_text()) >= 1
    chart = page.locator("svg.chart")
    assert chart.locator("line.axis").count() == 2
    assert chart.locator("text.axis-title").first.text_content() == "files"
    assert all(text in page.content() for text in ("files processed", "failed or quarantined", "run state"))
    assert page.locator("h1 [data-state]").inner_text() == "paused"
    assert page.locator("button.activation").count() == 0  # a viewer may not activate
    chart.scroll_into_view_if_needed()
    _shot(page, "10-flow-runs")
