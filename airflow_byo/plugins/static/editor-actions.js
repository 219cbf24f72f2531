// Test, Save, Delete and Activate for the flow form of editor-form.js, and the page's start.
// Activate/Pause is Airflow's own PATCH /api/v2/dags/{dag_id}, sent as Airflow's UI sends it:
// same origin, the _token cookie, a JSON body; Airflow checks the rights and writes its audit log.
(function () {
  "use strict";
  const page = document.getElementById("editor-page");
  if (!page || !window.BYOForm) return;
  const E = window.BYOEditor, F = window.BYOForm;
  const {h, byo, call, enc} = E;
  const {state, status, value} = F;
  const $ = (id) => document.getElementById(id);
  const editor = F.editor;
  const formSpec = F.formSpec;

  // -- Test on the unsaved form ----------------------------------------------------------------------
  function previewNode(p) {
    const facts = [`${p.size} bytes`, p.records != null ? `${p.records} records` : null, p.total_rows != null ? `${p.total_rows} rows` : null, p.compression].filter(Boolean);
    const body = p.columns && p.columns.length
      ? h("table", {className: "preview-table small"}, h("thead", {}, h("tr", {}, p.columns.map((c) => h("th", {textContent: c})))),
        h("tbody", {}, (p.rows || []).map((row) => h("tr", {}, row.map((v) => h("td", {textContent: typeof v === "object" && v !== null ? JSON.stringify(v) : String(v ?? "")}))))))
      : h("pre", {className: "preview-text", textContent: (p.lines || []).join("\n") + (p.truncated ? "\n…" : "")});
    return h("div", {className: "preview"}, h("h4", {textContent: `${p.name} · ${facts.join(", ")}${p.truncated ? " (first records)" : ""}`}),
      p.note ? h("p", {className: "muted small", textContent: p.note}) : null, body);
  }
  function showResult(data) {
    const out = $("test-result");
    editor.mark(data.ok ? null : data.error_line);
    out.replaceChildren();
    if (data.error) out.append(h("div", {className: "error-box", id: "test-error"}, h("strong", {textContent: data.error_line ? `Error at line ${data.error_line}: ` : "Error: "}), data.error,
      data.traceback ? h("details", {}, h("summary", {textContent: "traceback"}), h("pre", {textContent: data.traceback})) : null));
    if (data.previews) out.append(h("h3", {textContent: "Output preview"}), ...(data.previews.length ? data.previews.map(previewNode) : [h("p", {className: "muted", textContent: "No output for this file."})]));
    const facts = [...Object.entries(data.insights || {}).map(([k, v]) => [`insight ${k}`, JSON.stringify(v)]), ...Object.entries(data.counters || {}).map(([k, v]) => [`counter ${k}`, String(v)])];
    if (facts.length) out.append(h("h3", {textContent: "Insights and counters"}), h("dl", {id: "test-insights"}, facts.map(([k, v]) => [h("dt", {textContent: k}), h("dd", {textContent: v})])));
    if ((data.notifications || []).length) out.append(h("h3", {textContent: "Notifications that would be sent"}), h("ul", {}, data.notifications.map((n) => h("li", {textContent: `[${n.level}] ${n.message}`}))));
    const where = [data.packages ? `packages ${data.packages.join(", ") || "(none)"}` : null, data.sandbox ? `sandbox ${data.sandbox}` : null, data.file ? `file ${data.file}` : null].filter(Boolean);
    if (where.length) out.append(h("p", {className: "muted small", textContent: where.join(" · ")}));
    if ((data.log || []).length) out.append(h("details", {}, h("summary", {textContent: `log (${data.log.length} lines${data.log_truncated ? ", cut short" : ""})`}), h("pre", {className: "log", textContent: data.log.map((l) => `${String(l.level).toUpperCase()} ${l.message}`).join("\n")})));
  }
  // One Test: POST it; "building" asks again (the environment is built first), "queued"/"running"
  // polls GET /api/tests/{test_id} (the page's queue: one running Test per user), until its result.
  function testPhase(data) {
    if (data.state === "building") return `Building the environment (${(data.packages || []).join(", ") || "no packages"}) the first time…`;
    if (data.state === "queued") return `Waiting for a test slot (position ${data.position || "?"} in the queue)…`;
    return "Testing…";
  }
  async function testAnswer(spec, file, waiting) {
    let answer = await byo("POST", "/api/editor/test", {spec, test_file: file});
    for (;;) {
      const data = answer.data || {};
      if (!answer.ok || !["building", "queued", "running"].includes(data.state)) return answer;
      waiting(data);
      if (data.state === "building") { await E.sleep(1500); answer = await byo("POST", "/api/editor/test", {spec, test_file: file}); continue; }
      answer = await byo("GET", `/api/tests/${enc(data.test_id)}`);
    }
  }
  async function runTest() {
    const button = $("test-button"), cancel = $("test-cancel"), out = $("test-result"), began = performance.now();
    let spec;
    try { spec = formSpec(); } catch (e) { E.showErrors([{field: e.field, message: e.message}]); return; }
    if (!value("test-file")) { status("test-status", "Pick a test file: Browse the source, or type a file name.", "error"); $("test-file").focus(); return; }
    let phase = "Testing…";
    const elapsed = () => ((performance.now() - began) / 1000).toFixed(0);
    const tick = setInterval(() => { $("test-status").textContent = `${phase} ${elapsed()} s`; }, 500);
    button.disabled = true;
    out.classList.add("stale");
    status("test-status", phase, "muted");
    try {
      const answer = await testAnswer(spec, value("test-file"), (data) => {
        phase = testPhase(data);
        cancel.hidden = !data.test_id;
        cancel.dataset.testId = data.test_id || "";
      });
      clearInterval(tick);
      if (!answer.ok) {
        out.replaceChildren();
        if (answer.status === 422) E.showErrors(E.errorsOf(answer));
        status("test-status", `Test refused: ${E.message(answer)}`, "error");
        return;
      }
      showResult(answer.data);
      const seconds = ((performance.now() - began) / 1000).toFixed(2);
      const ok = answer.data.ok;
      status("test-status", ok ? `Tested in ${seconds} s; nothing was written.` : answer.data.state === "cancelled" ? "Cancelled." : `Failed after ${seconds} s.`, ok ? "ok" : "error").dataset.seconds = seconds;
    } finally { clearInterval(tick); button.disabled = false; cancel.hidden = true; out.classList.remove("stale"); }
  }
  async function cancelTest() {
    const id = $("test-cancel").dataset.testId;
    if (id) await byo("POST", `/api/tests/${enc(id)}/cancel`, {});
  }


  // -- Save: errors at their fields, 409 keeps the form ------------------------------------------------
  function specOrErrors() {
    try { return formSpec(); } catch (e) { E.showErrors([{field: e.field, message: e.message}]); return null; }
  }
  async function save() {
    E.clearErrors();
    $("conflict").hidden = true;
    const spec = specOrErrors();
    if (!spec) return;
    const button = $("save-button");
    button.disabled = true;
    status("save-status", "Saving…", "muted");
    const answer = state.mode === "edit"
      ? await byo("PUT", `/api/specs/${enc(state.name)}`, {spec, hash: state.hash})
      : await byo("POST", "/api/specs", {spec});
    button.disabled = false;
    if (answer.status === 409 && answer.data && answer.data.spec_folder) { F.showFolder(answer.data.spec_folder); status("save-status", `Not saved: ${E.message(answer)}`, "error"); return; }
    if (answer.status === 409 && state.mode === "edit") { showConflict(spec); return; }
    if (answer.status === 409) E.showErrors([{field: "name", message: E.message(answer)}]);
    else if (answer.status === 422) E.showErrors(E.errorsOf(answer));
    if (!answer.ok) { status("save-status", answer.status === 422 || answer.status === 409 ? "Not saved: fix the fields marked in red." : `Not saved: ${E.message(answer)}`, "error"); return; }
    state.hash = answer.data.hash;
    state.loaded = spec;
    if (state.mode === "edit") { status("save-status", savedText(answer.data, "Saved; Airflow parses the change now."), "ok"); refreshDag(); return; }
    becomeEdit(answer.data.name || spec.name);
    status("save-status", savedText(answer.data, `Saved as ${answer.data.file || `${state.name}.yaml`}.`), "ok");
    waitForDag(answer.data.dag_id || state.name, false);
  }
  // What a save did besides writing: nothing new, its git commit (and push), a parse not requested.
  function savedText(d, text) {
    const git = d.git ? (d.git.error ? `git: ${d.git.error}` : `committed ${String(d.git.commit || "").slice(0, 10)}${d.git.pushed ? " and pushed" : ""}`) : null;
    const reparse = d.reparse && d.reparse !== "requested" ? `Airflow parses it at its next interval (${d.reparse})` : null;
    return [d.unchanged ? "Nothing changed: the same content is saved already (no new version)." : text, git, reparse].filter(Boolean).join(" · ");
  }
  function becomeEdit(name) {
    state.mode = page.dataset.mode = "edit";
    state.name = page.dataset.name = name;
    window.history.replaceState(null, "", `${E.base}/specs/${enc(name)}/edit`);
    $("name").readOnly = true;
    $("editor-title").textContent = `Edit ${name}`;
    $("save-button").textContent = "Save changes";
    $("delete-name").textContent = name;
    $("delete-button").hidden = false;
    $("history-link").href = `${E.base}/specs/${enc(name)}/history`;
    $("page-link").href = `${E.base}/flows/${enc(name)}/flow`;
    $("edit-links").hidden = false;
  }
  function showConflict(spec) {
    $("conflict").hidden = false;
    if (spec) { $("unsaved").hidden = false; $("unsaved-json").textContent = JSON.stringify(spec, null, 2); }
    status("save-status", "Not saved: this flow was changed since you opened it.", "error");
    $("reload-button").focus();
  }
  async function loadSpec() {
    const answer = await byo("GET", `/api/specs/${enc(state.name)}`);
    if (!answer.ok) {
      const why = answer.status === 404 ? `No spec flow named ${state.name}: ${E.message(answer)}. Operator and decorator flows are Python DAG files: open the flow's page to copy one as a new spec flow.` : E.message(answer);
      status("load-error", why, "error-box").hidden = false;
      $("form-fields").disabled = true;
      return false;
    }
    state.hash = answer.data.hash;
    state.yaml = answer.data.yaml;
    F.fill(answer.data.spec);
    if (answer.data.editable === false) {
      status("load-error", `Read-only: ${answer.data.read_only_reason || "this spec cannot be changed on the page"}.`, "note").hidden = false;
      $("form-fields").disabled = true;
      if ($("save-button")) $("save-button").disabled = true;
    }
    return true;
  }
  async function showYaml() {
    const spec = specOrErrors();
    if (!spec) return;
    const answer = await byo("POST", "/api/editor/validate", {spec});
    const errors = answer.ok ? answer.data.errors || [] : E.errorsOf(answer);
    if (errors.length) E.showErrors(errors); else E.clearErrors();
    const folder = (state.options.spec_folder && state.options.spec_folder.path) || "<your spec folder>";
    $("yaml-panel").hidden = false;
    $("yaml-text").textContent = (answer.ok && answer.data.yaml) || JSON.stringify(spec, null, 2);
    $("yaml-how").textContent = errors.length ? "Fix the fields marked in red first; this is the spec as the form holds it." :
      `Valid. To add it by hand, save it as ${folder}/${spec.name}.yaml (a folder a DAG file passes to build_dags), then: git add ${spec.name}.yaml && git commit -m "flow ${spec.name}"`;
  }

  // -- the flow's DAG: listed, paused or active --------------------------------------------------------
  const dagUrl = (dagId) => `${E.airflowApi}/dags/${enc(dagId)}`;
  function showDag(dag) {
    $("dag-panel").hidden = $("dag-links").hidden = false;
    $("flow-link").href = `${E.base}/flows/${enc(dag.dag_id)}/flow`;
    $("dag-link").href = `${E.airflow}/dags/${enc(dag.dag_id)}`;
    const badge = $("dag-state");
    badge.textContent = dag.is_paused ? "paused" : "active";
    badge.className = `badge ${dag.is_paused ? "paused" : "active"}`;
    if ($("activate-button")) { $("activate-button").hidden = !dag.is_paused; $("pause-button").hidden = dag.is_paused; }
  }
  async function refreshDag() {
    const answer = await call("GET", dagUrl(state.name));
    if (answer.ok) showDag(answer.data);
  }
  async function waitForDag(dagId, gone) {
    const began = performance.now(), seconds = () => (performance.now() - began) / 1000;
    $("dag-panel").hidden = false;
    $("dag-links").hidden = true;
    for (;;) {
      const answer = await call("GET", dagUrl(dagId));
      if ((answer.ok && !answer.data.is_stale) !== gone) {
        const took = seconds().toFixed(1);
        const node = status("dag-status", gone ? `Airflow dropped the DAG ${dagId} after ${took} s.` : `Listed by Airflow after ${took} s, paused: nothing runs until you activate it.`, "dag-ok");
        Object.assign(node.dataset, {seconds: took, state: gone ? "gone" : "listed"});
        if (!gone) showDag(answer.data);
        return;
      }
      if (seconds() > 300) { status("dag-status", `After ${seconds().toFixed(0)} s Airflow ${gone ? "still lists the DAG" : "has not listed the flow"}: see the import errors on Airflow's DAGs page.`, "error"); return; }
      status("dag-status", `${gone ? "Deleted; waiting for Airflow to drop the DAG…" : "Saved; waiting for Airflow to list it…"} ${seconds().toFixed(0)} s`, "muted");
      await E.sleep(1000);
    }
  }
  async function setPaused(paused) {
    const answer = await call("PATCH", dagUrl(state.name), {is_paused: paused});
    if (!answer.ok) { status("dag-status", `Airflow refused to ${paused ? "pause" : "activate"} the flow: ${E.message(answer)}`, "error"); return; }
    showDag(answer.data);
    status("dag-status", paused ? "Paused: no new runs start." : "Active: the flow runs on its schedule.", "dag-ok");
  }

  // -- Delete, with an inline confirmation (the UI iframe blocks the browser's own dialogs) ------------
  async function deleteFlow() {
    const answer = await byo("DELETE", `/api/specs/${enc(state.name)}`, {hash: state.hash});
    $("delete-confirm").hidden = true;
    if (answer.status === 409) { showConflict(null); return; }
    if (!answer.ok) { status("save-status", `Not deleted: ${E.message(answer)}`, "error"); return; }
    $("form-fields").disabled = true;
    ["save-button", "delete-button", "test-button"].forEach((id) => { if ($(id)) $(id).disabled = true; });
    status("save-status", `Deleted ${state.name} (its last version is kept in the history).`, "ok");
    waitForDag(state.name, true);
  }

  // -- start ---------------------------------------------------------------------------------------------
  const on = (id, event, fn) => { const node = $(id); if (node) node.addEventListener(event, fn); };
  function wire() {
    on("source-type", "change", () => { F.fillConnections("source", ""); $("browse").hidden = true; F.matchCount(); });
    on("dest-type", "change", () => F.fillConnections("dest", ""));
    ["source-conn", "source-path", "include", "exclude", "min-size", "max-size", "modified-after"].forEach((id) => on(id, "input", F.matchCount));
    on("source-conn", "change", F.matchCount);
    on("browse-button", "click", () => F.browse(value("source-path")));
    on("frequency", "change", () => { F.showFrequency(); F.nextRuns(); });
    on("cron", "input", F.nextRuns);
    document.querySelectorAll("input[name=kind]").forEach((radio) => radio.addEventListener("change", F.showKind));
    on("runtime", "change", F.showRuntime);
    on("runtime-config", "input", E.runtimeConfig);
    on("test-button", "click", runTest);
    on("test-cancel", "click", cancelTest);
    on("save-button", "click", save);
    on("yaml-button", "click", showYaml);
    on("reload-button", "click", async () => { if (await loadSpec()) { $("conflict").hidden = true; status("save-status", "Reloaded the saved version; yours is below to copy from.", "muted"); } });
    on("delete-button", "click", () => { $("delete-confirm").hidden = false; $("delete-yes").focus(); });
    on("delete-no", "click", () => { $("delete-confirm").hidden = true; $("delete-button").focus(); });
    on("delete-yes", "click", deleteFlow);
    on("activate-button", "click", () => setPaused(false));
    on("pause-button", "click", () => setPaused(true));
  }
  async function start() {
    wire();
    await F.loadOptions();
    if (state.mode === "edit") {
      if (await loadSpec()) refreshDag();
    } else {
      const prefill = JSON.parse($("prefill").textContent || "null") || {};
      if (prefill.problem) status("load-error", `The copied flow's code could not be read: ${prefill.problem}`, "note").hidden = false;
      F.fill(prefill);
    }
    page.dataset.ready = "true";  // the form holds its spec (tests wait for this)
  }
  start();
})();
