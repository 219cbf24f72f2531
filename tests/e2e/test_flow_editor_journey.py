"""
The seed's whole journey on the BYO Flows page, in real headless Chromium on the shared running
deployment: create an S3 -> local flow on moto (connection ``byo_e2e_s3``, defined by environment
variable) -- browse the bucket, see the filter count, write the function, Test, Save, see it
listed paused, Activate on the page, run it (every file processed exactly once, by the ledger) --
edit the function, Save, run again on a new file, see the history and revert, delete and see the
DAG go.

Screenshots of every step are kept in ``tests/e2e/artifacts/editor/`` (``BYO_EDITOR_SCREENSHOTS``
overrides the folder); the README shows some of them (``docs/images/editor-*.png``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_ui_plugin
from tests.e2e.deployment import Deployment
from tests.e2e.processes import DeploymentError

pytestmark = pytest.mark.e2e

# The UI test's Chromium page (on this module's `ui` below), and the example operator flow to copy.
browser_page = test_ui_plugin.browser_page
OPERATOR_FLOW = test_ui_plugin.OPERATOR_FLOW

SCREENSHOTS = Path(os.environ.get("BYO_EDITOR_SCREENSHOTS", Path(__file__).parent / "artifacts" / "editor"))
BUCKET = "byo-editor-journey"
FILES = {"in/a.csv": "id,name\n1,ann\n2,bob\n", "in/b.csv": "id,name\n3,cy\n", "in/c.csv": "id,name\n4,di\n"}
SKIPPED = {"in/skip_me.csv": "id,name\n9,no\n", "in/notes.txt": "not a csv\n"}
CODE = """import csv


def process(file, ctx):
    with file.open() as handle:
        rows = list(csv.DictReader(handle))
    ctx.insight("rows", len(rows))
    return [{**row, "version": VERSION} for row in rows]
"""
#: A generous bound for Save -> listed by Airflow (the goal is seconds; bench/ measures it).
LISTED_WITHIN = 120.0


@dataclass
class Journey:
    """One run of the journey: the browser page, the deployment and the flow's names and folders."""

    page: Any
    deployment: Deployment
    name: str
    output: Path

    @property
    def frame(self) -> Any:
        return self.page.frame_locator("iframe")

    @property
    def flow_id(self) -> str:
        return f"{self.name}.flow"

    def shot(self, step: str, focus: str | None = None) -> None:
        if focus:
            self.frame.locator(focus).scroll_into_view_if_needed()
        self.page.wait_for_timeout(300)  # let the frame paint
        self.page.screenshot(path=str(SCREENSHOTS / f"{step}.png"))

    def done_counts(self) -> Counter[str]:
        return self.deployment.ledger_events(self.flow_id, "done")

    def outputs(self) -> dict[str, list[dict[str, Any]]]:
        return {
            p.name: [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
            for p in sorted(self.output.rglob("*.jsonl"))
        }


# -- set-up: the deployment's spec folder, a local root, the bucket ---------------------------------


def _editor_options(deployment: Deployment) -> dict[str, Any]:
    return dict(deployment.client("admin").get("/byo/api/editor/options"))


def _spec_folder_ready(deployment: Deployment) -> dict[str, Any]:
    """The deployment's spec folder once its flows factory parsed it (the factory's marker written)."""
    folder: dict[str, Any] = {}

    def ready() -> bool:
        folder.update(_editor_options(deployment)["spec_folder"])
        return folder["state"] == "ok"

    try:
        deployment.wait_until(ready, timeout=180, what="the spec folder read by its flows factory")
    except DeploymentError:
        pytest.fail(
            f"the e2e deployment's spec folder is {folder.get('state')}: {folder.get('message')}. Fix: "
            "tests/e2e/deployment.py sets AIRFLOW__BYO__SPEC_FOLDER and writes its factory (EDITOR_FACTORY)"
        )
    return folder


@pytest.fixture(scope="module")
def ui(deployment: Deployment) -> Deployment:
    """The deployment with the example operator flow (the UI test's ``ui`` adds more, and a connection)."""
    examples = test_ui_plugin.EXAMPLES
    deployment.write_dag_file(f"{OPERATOR_FLOW[0]}.py", (examples / f"{OPERATOR_FLOW[0]}.py").read_text())
    data = deployment.dags_folder.parent / "example_data"  # beside the DAGs folder, where it looks
    shutil.copytree(examples.parent / "example_data", data, dirs_exist_ok=True)
    deployment.wait_for_dag(OPERATOR_FLOW[0], timeout=180)
    return deployment


@pytest.fixture(scope="module")
def journey_setup(deployment: Deployment) -> tuple[dict[str, Any], Path]:
    """The spec folder (ok), a fresh output folder under a local root, the bucket with its files."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _spec_folder_ready(deployment)
    roots = _editor_options(deployment)["local_roots"]
    if not roots:
        pytest.fail(
            "the e2e deployment sets no [byo] editor_local_roots, so a page-made flow cannot write "
            "locally. Fix: set AIRFLOW__BYO__EDITOR_LOCAL_ROOTS in tests/e2e/deployment.py"
        )
    output = Path(roots[0]) / f"editor-journey-{uuid.uuid4().hex[:8]}"
    output.mkdir(parents=True)
    assert deployment.s3 is not None
    s3 = deployment.s3.client()
    s3.create_bucket(Bucket=BUCKET)
    for key, text in {**FILES, **SKIPPED}.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())
    return _editor_options(deployment), output


# -- the steps ----------------------------------------------------------------------------------------


def _log_in(journey: Journey, user: str) -> None:
    page, deployment = journey.page, journey.deployment
    page.context.clear_cookies()  # a new session, whoever was signed in
    page.goto(f"{deployment.api_url}/auth/login")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(deployment.passwords[user])
    page.locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)
    page.goto(f"{deployment.api_url}/plugin/byo-flows")
    journey.frame.locator("#new-flow").click()
    journey.frame.locator('#editor-page[data-ready="true"]').wait_for(state="attached")
    journey.shot("01-new-flow-form")


def _source_and_filters(journey: Journey) -> None:
    frame = journey.frame
    frame.locator("#source-type").select_option("s3")
    frame.locator("#source-conn").select_option(journey.deployment.s3_conn_id)
    frame.locator("#source-path").fill(BUCKET)
    frame.locator("#browse-button").click()
    frame.locator("#browse button.entry.dir", has_text="in").click()
    frame.locator("#browse button.entry.file", has_text="a.csv").wait_for()
    assert frame.locator("#source-path").input_value() == f"{BUCKET}/in"
    listed = frame.locator("#browse .entry-name").all_inner_texts()
    assert sorted(listed) == sorted(Path(k).name for k in (*FILES, *SKIPPED))
    journey.shot("02-browse-the-bucket", "#browse")
    frame.locator("#name").fill(journey.name)
    frame.locator("#description").fill("CSV files of the journey's bucket as JSON Lines <b>as text</b>")
    frame.locator("#frequency").select_option("cron")
    frame.locator("#cron").fill("0 6 * * *")
    frame.locator("#next-runs", has_text="next runs").wait_for()
    frame.locator("#frequency").select_option("manual")  # runs are triggered below
    frame.locator("#include").fill("*.csv")
    frame.locator("#exclude").fill("skip_*")
    count = frame.locator(f'#match-count[data-matching="{len(FILES)}"]')
    count.wait_for()
    assert count.inner_text().startswith(f"{len(FILES)} of {len(FILES) + len(SKIPPED)} files match")
    journey.shot("03-filters-match", "#match-count")


def _processing_and_test(journey: Journey, version: int) -> None:
    frame = journey.frame
    frame.locator("#code").fill(CODE.replace("VERSION", str(version)))
    frame.locator("#runtime-config").fill('{"job_config": {"timeout_seconds": 60},}')
    check = frame.locator("#runtime-config-check.error")
    check.wait_for()
    assert "Line 1" in check.inner_text()  # the parse error, at its place, as it is typed
    frame.locator("#runtime-config").fill('{"job_config": {"timeout_seconds": 60}}')
    frame.locator("#runtime-config-check.ok").wait_for()
    frame.locator("#dest-type").select_option("local")
    frame.locator("#dest-path").fill(str(journey.output))
    frame.locator("#output-name").fill("{stem}.jsonl")
    frame.locator("#test-file").fill("a.csv")
    frame.locator("#test-button").click()
    frame.locator("#test-status.ok").wait_for(timeout=600_000)
    result = frame.locator("#test-result").inner_text()
    assert "version" in result, result
    assert "ann" in result, result
    assert "bob" in result, result
    journey.shot("04-test" if version == 1 else "08-test-edited", "#test-result")


def _save_and_activate(journey: Journey) -> float:
    frame, deployment = journey.frame, journey.deployment
    # a destination outside [byo] editor_local_roots: refused, the error at its field, nothing lost
    frame.locator("#dest-path").fill("/etc/byo-editor-out")
    frame.locator("#save-button").click()
    error = frame.locator('#dest-path ~ .field-error[data-field="destination.path"]')
    error.wait_for()
    assert "editor_local_roots" in error.inner_text() or "/etc" in error.inner_text(), error.inner_text()
    assert frame.locator("#dest-path.invalid").count() == 1
    assert '"version": 1' in frame.locator("#code").input_value()
    journey.shot("05-invalid-field", "#step-destination")
    frame.locator("#dest-path").fill(str(journey.output))
    frame.locator("#save-button").click()
    listed = frame.locator('#dag-status[data-state="listed"]')
    listed.wait_for(timeout=int(LISTED_WITHIN * 1000) + 60_000)
    seconds = float(listed.get_attribute("data-seconds") or "nan")
    assert seconds <= LISTED_WITHIN, f"Save -> listed took {seconds} s"
    assert frame.locator("#dag-state").inner_text() == "paused"
    assert (deployment.dag(journey.name) or {})["is_paused"]  # created paused
    journey.shot("06-saved-listed-paused", "#dag-panel")
    frame.locator("#activate-button").click()
    frame.locator("#dag-state.active").wait_for()
    deployment.wait_until(
        lambda: not (deployment.dag(journey.name) or {}).get("is_paused", True), timeout=30, what="activated"
    )
    journey.shot("07-activated", "#dag-panel")
    return seconds


def _run(journey: Journey, expected: dict[str, int]) -> None:
    run_id = journey.deployment.trigger(journey.name)
    journey.deployment.wait_for_run(journey.name, run_id, timeout=600)
    assert journey.done_counts() == Counter(expected)  # every file once, never twice


def _edit(journey: Journey) -> None:
    from playwright.sync_api import expect

    frame = journey.frame
    assert any(f.url.endswith(f"/byo/specs/{journey.name}/edit") for f in journey.page.frames)
    _processing_and_test(journey, version=2)
    # meanwhile someone else saves the flow: the page's Save answers 409 and keeps the form
    api, path = journey.deployment.client("admin"), f"/byo/api/specs/{journey.name}"
    current = api.get(path)
    elsewhere = current["spec"] | {"description": "changed elsewhere"}
    api.request("PUT", path, json={"spec": elsewhere, "hash": current["hash"]})
    frame.locator("#save-button").click()
    frame.locator("#conflict").wait_for()
    assert "changed since you opened it" in frame.locator("#conflict").inner_text()
    assert '"version": 2' in frame.locator("#code").input_value()  # nothing lost
    assert '\\"version\\": 2' in (frame.locator("#unsaved-json").text_content() or "")  # JSON-escaped code
    journey.shot("09-conflict", "#save-panel")
    frame.locator("#reload-button").click()
    expect(frame.locator("#description")).to_have_value("changed elsewhere")
    frame.locator("#code").fill(CODE.replace("VERSION", "2"))
    frame.locator("#save-button").click()
    frame.locator("#save-status.ok", has_text="Saved").wait_for()
    journey.shot("10-edited-saved", "#save-panel")


def _history_and_revert(journey: Journey) -> None:
    frame = journey.frame
    frame.locator("#history-link").click()
    first = frame.locator('#versions tr[data-version="1"]')  # as created: the code of version 1
    first.locator("button.show-version").click()
    diff = frame.locator("#diff")  # the current file -> that version
    diff.locator(".add", has_text='"version": 1').wait_for()
    assert diff.locator(".del", has_text='"version": 2').count() == 1
    journey.shot("11-history-diff", "#version-panel")
    frame.locator("#revert-button").click()
    frame.locator("#revert-status.ok").wait_for()
    spec = journey.deployment.client("user").get(f"/byo/api/specs/{journey.name}")["spec"]
    assert '"version": 1' in spec["processing"]["code"]
    journey.shot("12-reverted", "#version-panel")


def _delete(journey: Journey) -> None:
    frame, deployment = journey.frame, journey.deployment
    frame.locator("#edit-link").click()
    frame.locator('#editor-page[data-ready="true"]').wait_for(state="attached")
    frame.locator("#delete-button").click()
    frame.locator("#delete-confirm").wait_for()
    journey.shot("13-delete-confirm", "#delete-confirm")
    frame.locator("#delete-yes").click()
    frame.locator('#dag-status[data-state="gone"]').wait_for(timeout=240_000)
    dag = deployment.dag(journey.name)
    assert dag is None or dag["is_stale"]
    journey.shot("14-deleted-dag-gone", "#save-panel")


def test_create_test_save_activate_run_edit_revert_delete(
    deployment: Deployment, journey_setup: tuple[dict[str, Any], Path], browser_page: Any
) -> None:
    _options, output = journey_setup
    journey = Journey(browser_page, deployment, f"editor_journey_{uuid.uuid4().hex[:6]}", output)
    began = time.monotonic()
    try:
        _log_in(journey, "user")
        _source_and_filters(journey)
        _processing_and_test(journey, version=1)
        deployment.timings["editor: Save -> DAG listed"] = _save_and_activate(journey)
        _run(journey, {Path(k).name: 1 for k in FILES})
        assert {n: [r["version"] for r in rows] for n, rows in journey.outputs().items()} == {
            "a.jsonl": [1, 1],
            "b.jsonl": [1],
            "c.jsonl": [1],
        }
        _edit(journey)
        assert deployment.s3 is not None
        deployment.s3.client().put_object(Bucket=BUCKET, Key="in/d.csv", Body=b"id,name\n5,ed\n")
        _run(journey, {Path(k).name: 1 for k in (*FILES, "in/d.csv")})
        assert [r["version"] for r in journey.outputs()["d.jsonl"]] == [2]  # the new code, new file only
        assert [r["version"] for r in journey.outputs()["a.jsonl"]] == [1, 1]
        _history_and_revert(journey)
        _delete(journey)
    finally:
        deployment.timings["editor: the whole journey"] = time.monotonic() - began
        with_spec = deployment.client("admin").http.get(f"/byo/api/specs/{journey.name}")
        if with_spec.status_code == 200:  # a failed run leaves no flow behind for the other tests
            deployment.client("admin").http.request(
                "DELETE", f"/byo/api/specs/{journey.name}", json={"hash": with_spec.json()["hash"]}
            )


def test_an_operator_flow_copied_as_a_new_spec_and_a_viewer_reads_only(
    ui: Deployment, journey_setup: tuple[dict[str, Any], Path], browser_page: Any
) -> None:
    dag_id, task_id = OPERATOR_FLOW
    journey = Journey(browser_page, ui, dag_id, journey_setup[1])
    _log_in(journey, "user")
    frame = journey.frame
    frame.locator("a.brand").click()
    frame.locator(f'tr[data-dag-id="{dag_id}"] a.copy-flow').click()
    frame.locator('#editor-page[data-ready="true"]').wait_for(state="attached")
    assert dag_id in frame.locator("#copied-from").inner_text()
    assert frame.locator("#name").input_value() == f"{dag_id}_{task_id}"
    assert frame.locator("#source-type").input_value() == "local"
    assert frame.locator("#source-path").input_value().endswith("example_data/customers")
    assert frame.locator("#include").input_value() == "*.csv"
    assert frame.locator("#frequency").input_value() == "manual"
    assert frame.locator("#packages").input_value() == "unidecode==1.3.8"
    assert frame.locator("#function-name").input_value() == "clean_customers"
    assert frame.locator("#code").input_value().startswith("def clean_customers(file, ctx")
    assert json.loads(frame.locator("#runtime-config").input_value())["source_system"] == "crm-export"
    journey.shot("15-copy-of-an-operator-flow")
    # a viewer gets the same form, read-only, with the reason said first
    _log_in(journey, "viewer")
    assert journey.frame.locator("#form-fields").get_attribute("disabled") is not None
    assert journey.frame.locator("#source-path").is_disabled()  # inside the disabled fieldset
    note = journey.frame.locator("#read-only-note").inner_text()
    assert "creating a flow needs edit access to DAGs" in note
    assert journey.frame.locator("#save-button").count() == 0
    journey.shot("16-viewer-read-only")
