// The flow form (New, Edit, a copy) in the seed's order, on the helpers of editor.js. The form is
// a spec: formSpec() builds it from the inputs over the loaded spec (keys the form does not show,
// such as sensor, notifications or tags, stay as loaded), fill() puts a spec into the inputs.
(function () {
  "use strict";
  const page = document.getElementById("editor-page");
  if (!page || !window.BYOEditor) return;
  const E = window.BYOEditor;
  const {h, byo, call, enc} = E;
  const $ = (id) => document.getElementById(id);
  const canWrite = page.dataset.canWrite === "true";
  const state = {mode: page.dataset.mode, name: page.dataset.name, hash: null, loaded: {}, options: {}, seq: {}};
  const CONN_TYPES = {s3: ["aws", "s3"], sftp: ["sftp", "ssh"]};
  const NEW_CODE = 'def process(file, ctx):\n    """One input file in, its output back: bytes, str or records."""\n    with file.open() as f:\n        return f.read()\n';
  const editor = E.codeEditor();
  const value = (id) => $(id).value.trim();
  const list = (id) => value(id).split(",").map((s) => s.trim()).filter(Boolean);
  const number = (id) => (value(id) === "" ? null : Number(value(id)));
  const kind = () => document.querySelector("input[name=kind]:checked").value;
  const empty = (v) => v === "" || v === null || v === undefined || (Array.isArray(v) && !v.length);
  function put(target, key, v) { if (empty(v)) delete target[key]; else target[key] = v; return target; }
  function status(id, text, className) { const node = $(id); node.textContent = text; node.className = className || ""; return node; }
  // Run fn at most once per wait, and drop answers older than the newest request.
  function debounced(key, wait, fn) {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(() => { state.seq[key] = (state.seq[key] || 0) + 1; fn(state.seq[key]); }, wait); };
  }
  const current = (key, n) => state.seq[key] === n;

  // -- options: connections, runtimes, library functions, frequencies, the spec folder -----------
  function fillConnections(prefix, chosen) {
    const type = $(`${prefix}-type`).value, select = $(`${prefix}-conn`);
    const fitting = (state.options.connections || []).filter((c) => (CONN_TYPES[type] || []).includes(c.conn_type));
    select.replaceChildren(h("option", {value: "", textContent: type === "local" ? "(none: a local folder)" : "choose a connection…"}));
    for (const c of fitting) select.append(h("option", {value: c.conn_id, textContent: `${c.conn_id} (${c.conn_type})${c.description ? ` · ${c.description}` : ""}`}));
    if (chosen && !fitting.some((c) => c.conn_id === chosen)) select.append(h("option", {value: chosen, textContent: `${chosen} (not found)`}));
    select.value = chosen || "";
    select.disabled = type === "local";
  }
  function fillFrequencies(chosen) {
    const select = $("frequency");
    const offered = (state.options.frequencies || ["manual", "once", "hourly", "daily"]).map((f) => (typeof f === "string" ? f : f.value));
    const presets = offered.filter((f) => f !== "on new files" && f !== "cron");
    select.replaceChildren(...presets.map((f) => h("option", {value: f, textContent: f})),
      h("option", {value: "on new files", textContent: "on new files (watch the source)"}),
      h("option", {value: "cron", textContent: "a cron expression…"}));
    const text = (chosen || "manual").trim();
    const onNew = ["on new files", "on_new_files"].includes(text.toLowerCase());
    const preset = presets.find((f) => f === text.toLowerCase());
    if (text.startsWith("asset:")) select.append(h("option", {value: text, textContent: text}));
    select.value = onNew ? "on new files" : preset || (text.startsWith("asset:") ? text : "cron");
    $("cron").value = select.value === "cron" ? text : "";
    showFrequency();
  }
  function showFrequency() {
    const f = $("frequency").value;
    $("cron-label").hidden = f !== "cron";
    $("poll-label").hidden = $("recheck-label").hidden = f !== "on new files";
  }
  function fillRuntimes(chosen) {
    const select = $("runtime");
    select.replaceChildren(h("option", {value: "", textContent: "default"}),
      ...(state.options.runtimes || []).filter((r) => r.name !== "default").map((r) => h("option", {value: r.name, textContent: r.name})));
    if (chosen && ![...select.options].some((o) => o.value === chosen)) select.append(h("option", {value: chosen, textContent: `${chosen} (unknown)`}));
    select.value = chosen || "";
    showRuntime();
  }
  function showRuntime() {
    const name = $("runtime").value || "default";
    const r = (state.options.runtimes || []).find((x) => x.name === name);
    $("runtime-packages").textContent = r ? `Base packages of runtime ${r.name}: ${(r.packages || []).join(", ") || "none"} (the flow's packages override them)${r.python ? ` · Python ${r.python}` : ""}${r.description ? ` · ${r.description}` : ""}` : "";
  }
  function fillFunctions(chosen) {
    const select = $("library-function");
    select.replaceChildren(h("option", {value: "", textContent: "choose a function…"}),
      ...(state.options.functions || []).map((ref) => h("option", {value: ref, textContent: ref})));
    if (chosen && ![...select.options].some((o) => o.value === chosen)) select.append(h("option", {value: chosen, textContent: chosen}));
    select.value = chosen || "";
  }
  function showFolder(folder) {
    if (!folder || folder.state === "ok") return;
    const note = $("folder-note");
    note.replaceChildren(h("strong", {textContent: "This page cannot save flows here: "}), h("span", {className: "pre-line", textContent: folder.message || folder.state}),
      h("div", {className: "small", textContent: "You can still fill in the form and Test it; Show the YAML gives the spec to commit."}));
    note.hidden = false;
    note.dataset.state = folder.state;
    if ($("save-button")) $("save-button").disabled = true;
  }
  async function loadOptions() {
    const answer = await byo("GET", "/api/editor/options");
    if (!answer.ok) { status("load-error", `The form's options did not load: ${E.message(answer)}`, "error-box").hidden = false; return; }
    state.options = answer.data;
    showFolder(answer.data.spec_folder);
  }

  // -- the spec from the form, the form from a spec ------------------------------------------------
  function place(prefix, old) {
    const type = $(`${prefix}-type`).value;
    const loc = Object.assign({}, old || {}, {type, path: value(`${prefix}-path`)});
    return put(loc, "conn_id", type === "local" ? "" : $(`${prefix}-conn`).value);
  }
  function sourcePart(old) {
    const source = place("source", old);
    source.include = list("include").length ? list("include") : ["*"];
    put(source, "exclude", list("exclude"));
    put(source, "min_size", number("min-size"));
    put(source, "max_size", number("max-size"));
    return put(source, "modified_after", value("modified-after"));
  }
  function processingPart() {
    const p = {};
    if (kind() === "code") { p.code = $("code").value; if (value("function-name") !== "process") put(p, "function_name", value("function-name")); }
    if (kind() === "function") p.function = $("library-function").value;
    if (kind() === "reference") p.reference = value("reference");
    put(p, "packages", value("packages"));
    put(p, "runtime", $("runtime").value);
    const config = E.runtimeConfig();
    if (config === undefined) throw Object.assign(new Error($("runtime-config-check").textContent), {field: "processing.runtime_config"});
    if (value("output-name")) config.job_config = Object.assign({}, config.job_config, {output_name: value("output-name")});
    return put(p, "runtime_config", Object.keys(config).length ? config : null);
  }
  function formSpec() {
    const spec = JSON.parse(JSON.stringify(state.loaded || {}));
    delete spec.problem;
    spec.name = value("name");
    put(spec, "description", value("description"));
    spec.source = sourcePart(spec.source);
    const f = $("frequency").value;
    spec.schedule = f === "cron" ? value("cron") : f;
    const watch = put(put({}, "poll_interval", number("poll-interval")), "recheck_interval", number("recheck-interval"));
    put(spec, "watch", f === "on new files" && Object.keys(watch).length ? watch : null);
    spec.processing = processingPart();
    spec.destination = place("dest", spec.destination);
    return spec;
  }
  function fillPlace(prefix, loc) {
    $(`${prefix}-type`).value = (loc && loc.type) || "local";
    $(`${prefix}-path`).value = (loc && loc.path) || "";
    fillConnections(prefix, loc && loc.conn_id);
  }
  function fill(spec) {
    state.loaded = spec || {};
    const s = spec.source || {}, p = spec.processing || {};
    $("name").value = spec.name || "";
    $("description").value = spec.description || "";
    fillPlace("source", s);
    $("include").value = (s.include || ["*"]).join(", ");
    $("exclude").value = (s.exclude || []).join(", ");
    $("min-size").value = s.min_size ?? "";
    $("max-size").value = s.max_size ?? "";
    $("modified-after").value = s.modified_after || "";
    fillFrequencies(spec.schedule);
    $("poll-interval").value = (spec.watch && spec.watch.poll_interval) ?? "";
    $("recheck-interval").value = (spec.watch && spec.watch.recheck_interval) ?? "";
    const which = p.function ? "function" : p.reference ? "reference" : "code";
    $("kind-reference-label").hidden = !p.reference;  // the page saves code or library functions only
    $(`kind-${which}`).checked = true;
    $("code").value = p.code ?? (which === "code" ? NEW_CODE : "");
    $("function-name").value = p.function_name || "process";
    fillFunctions(p.function);
    $("reference").value = p.reference || "";
    $("packages").value = Array.isArray(p.packages) ? p.packages.join(",") : p.packages || "";
    fillRuntimes(p.runtime);
    const config = JSON.parse(JSON.stringify(p.runtime_config || {}));
    $("output-name").value = (config.job_config && config.job_config.output_name) || "";
    if (config.job_config) { delete config.job_config.output_name; if (!Object.keys(config.job_config).length) delete config.job_config; }
    $("runtime-config").value = Object.keys(config).length ? JSON.stringify(config, null, 2) : "";
    fillPlace("dest", spec.destination);
    showKind(); editor.paint(); E.runtimeConfig(); nextRuns(); matchCount();
  }
  function showKind() {
    $("code-part").hidden = kind() !== "code";
    $("function-part").hidden = kind() !== "function";
    $("reference-part").hidden = kind() !== "reference";
  }

  // -- Browse, the filter count, the next runs -----------------------------------------------------
  const parentOf = (path) => { const trimmed = path.replace(/\/+$/, ""); const cut = trimmed.lastIndexOf("/"); return trimmed === "" || trimmed === "/" ? null : cut <= 0 ? (trimmed.startsWith("/") ? "/" : "") : trimmed.slice(0, cut); };
  const joined = (path, name) => (path === "" ? name : `${path.replace(/\/+$/, "")}/${name}`);
  function sizeText(n) { return n === null || n === undefined ? "" : n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`; }
  async function browse(path) {
    const panel = $("browse"), type = $("source-type").value;
    panel.hidden = false;
    panel.replaceChildren(h("p", {className: "muted small", textContent: "Listing…"}));
    const answer = await byo("POST", "/api/editor/browse", {type, conn_id: type === "local" ? null : $("source-conn").value || null, path, name: value("name") || null});
    if (!answer.ok) { panel.replaceChildren(h("p", {className: "error small", id: "browse-error", textContent: E.message(answer)})); return; }
    const here = answer.data.path ?? path;
    const up = type === "local" && (state.options.local_roots || []).includes(here) ? "" : parentOf(here);
    $("source-path").value = here;
    matchCount();
    const head = h("div", {className: "browse-head"}, h("span", {className: "small"}, "Directory ", h("code", {textContent: here || "(top)"})),
      up === null ? null : h("button", {type: "button", id: "browse-up", textContent: "↑ Up", onclick: () => browse(up)}),
      h("button", {type: "button", textContent: "Close", onclick: () => { panel.hidden = true; $("browse-button").focus(); }}));
    const rows = answer.data.entries.map((e) => h("li", {}, h("button", {type: "button", className: `entry ${e.kind}`,
      onclick: () => (e.kind === "dir" ? browse(joined(here, e.name)) : pickTestFile(e.name))},
    h("span", {className: "kind", textContent: e.kind === "dir" ? "▸" : "·"}), h("span", {className: "entry-name", textContent: e.name}),
    h("span", {className: "entry-meta", textContent: e.kind === "dir" ? "folder" : `${sizeText(e.size)}${e.modified ? ` · ${String(e.modified).replace("T", " ").slice(0, 19)}` : ""}`}))));
    const files = answer.data.entries.filter((e) => e.kind === "file").map((e) => e.name);
    $("test-files") && $("test-files").replaceChildren(...files.map((name) => h("option", {value: name})));
    panel.replaceChildren(h("div", {}, head, rows.length ? h("ul", {}, rows) : h("p", {className: "muted small", textContent: "Empty."}),
      answer.data.truncated ? h("p", {className: "muted small", textContent: answer.data.error || "The listing was cut short (too many entries): type a deeper directory."}) : null));
  }
  function pickTestFile(name) {
    if (!$("test-file")) return;
    $("test-file").value = name;
    $("test-file").focus();
  }
  const matchCount = debounced("match", 600, async (n) => {
    const out = $("match-count"), source = sourcePart({});
    if (!source.path || (source.type !== "local" && !source.conn_id)) { status("match-count", "Choose a directory (and a connection) to see which files match.", "match muted"); return; }
    status("match-count", "Counting the files that match…", "match muted");
    const answer = await byo("POST", "/api/editor/match", {source, name: value("name") || null});
    if (!current("match", n)) return;
    const d = answer.data || {};
    if (!answer.ok || d.error) { status("match-count", answer.ok ? d.error : E.message(answer), "match error"); return; }
    out.className = "match";
    out.dataset.matching = d.matching; out.dataset.listed = d.listed;
    out.replaceChildren(h("strong", {textContent: `${d.matching} of ${d.listed}`}), ` files match${d.truncated ? " (the listing was cut short)" : ""}`,
      d.sample && d.sample.length ? h("span", {className: "muted small", textContent: ` · e.g. ${d.sample.slice(0, 5).join(", ")}`}) : null);
    if ($("test-files") && d.sample) $("test-files").replaceChildren(...d.sample.map((name) => h("option", {value: name})));
  });
  const nextRuns = debounced("schedule", 400, async (n) => {
    const f = $("frequency").value, schedule = f === "cron" ? value("cron") : f;
    if (!schedule) { status("next-runs", "Type a cron expression, e.g. 0 6 * * * (06:00 every day).", "muted small"); return; }
    const answer = await byo("POST", "/api/editor/schedule", {schedule});
    if (!current("schedule", n)) return;
    if (!answer.ok) { status("next-runs", E.message(answer), "error small"); return; }
    const runs = answer.data.next_runs || [];
    const what = f === "on new files" ? "Runs when new files land in the source (watched by Airflow's triggerer)." :
      answer.data.airflow_schedule ? `Airflow schedule ${answer.data.airflow_schedule}` : "No schedule: runs only when triggered.";
    status("next-runs", `${what}${runs.length ? ` · next runs: ${runs.map((r) => String(r).replace("T", " ").slice(0, 16)).join(", ")} (UTC)` : ""}`, "muted small");
  });

  window.BYOForm = {state, editor, formSpec, fill, fillConnections, showFrequency, showKind, showRuntime, browse, matchCount, nextRuns, status, loadOptions, value, canWrite, showFolder};
})();
