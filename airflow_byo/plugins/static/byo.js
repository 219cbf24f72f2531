// The BYO Flows page: vanilla JS, no build step. Every request is same-origin (the UI's
// _token cookie authenticates it) and every POST sends JSON, never a form.
(function () {
  "use strict";
  const base = (window.BYO && window.BYO.base) || "/byo";
  const airflowApi = (window.BYO && window.BYO.airflowApi) || "/api/v2";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // Same-origin JSON requests: the UI's _token cookie (HttpOnly, SameSite=Lax) authenticates them,
  // as it does the Airflow UI's own calls to /api/v2.
  async function request(method, url, body) {
    const options = {method, credentials: "same-origin", headers: {"Accept": "application/json"}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const detail = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : response.statusText;
      throw new Error(`${response.status}: ${detail}`);
    }
    return data;
  }
  function api(method, path, body) { return request(method, base + path, body); }
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Links into Airflow's own UI: the page runs in the UI's iframe, which may not navigate the
  // top window, but the same-origin parent's router follows a pushState + popstate.
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a.airflow-link");
    if (!link) return;
    try {
      if (window.top !== window && window.top.location.origin === window.location.origin) {
        event.preventDefault();
        window.top.history.pushState({}, "", link.getAttribute("href"));
        window.top.dispatchEvent(new PopStateEvent("popstate", {state: {}}));
      }
    } catch (e) { /* not same-origin: the link opens in the frame */ }
  });

  // Activate / Pause: Airflow's own PATCH /api/v2/dags/{dag_id}, with the user's own session, so
  // Airflow checks the right and writes its audit log; the row shows the new state at once.
  function showActivation(cell, active) {
    const badge = cell.querySelector("[data-state]");
    badge.textContent = active ? "active" : "paused";
    badge.className = `badge ${active ? "active" : "paused"}`;
    const button = cell.querySelector("button.activation");
    button.dataset.paused = active ? "false" : "true";
    button.textContent = active ? "Pause" : "Activate";
  }
  document.querySelectorAll("button.activation").forEach((button) => button.addEventListener("click", async () => {
    const cell = button.parentElement;
    const note = cell.querySelector(".activation-error");
    if (note) note.remove();
    button.disabled = true;
    try {
      const dag = await request("PATCH", `${airflowApi}/dags/${encodeURIComponent(button.dataset.dagId)}`,
        {is_paused: button.dataset.paused !== "true"});
      showActivation(cell, !dag.is_paused);
    } catch (e) {
      cell.append(el("span", {class: "error small activation-error"}, ` ${e.message}`));
    } finally { button.disabled = false; }
  }));

  const flowNode = document.getElementById("flow");
  if (!flowNode) return;
  const flowPath = `/api/flows/${encodeURIComponent(flowNode.dataset.dagId)}/${encodeURIComponent(flowNode.dataset.taskId)}`;
  const canEdit = flowNode.dataset.canEdit === "true";

  // Source listing: the test file picker and the "new" ledger count.
  api("GET", flowPath + "/files").then((data) => {
    const list = document.getElementById("source-files");
    const note = document.getElementById("files-note");
    const count = document.getElementById("new-count");
    if (count) count.textContent = data.new === null || data.new === undefined ? "?" : data.new;
    if (data.error && note) note.textContent = data.error;
    if (!list) return;
    for (const f of data.files) list.append(el("option", {value: f.name}, `${f.name} (${f.size} bytes)`));
    const input = document.getElementById("test-file");
    if (input && !input.value && data.files.length) input.value = data.files[data.files.length - 1].name;
    if (note && !data.error) note.textContent = `${data.files.length} file(s) in the source`;
  }).catch((e) => { const note = document.getElementById("files-note"); if (note) note.textContent = e.message; });

  document.querySelectorAll("button.replay").forEach((button) => button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const data = await api("POST", flowPath + "/replay", {path: button.dataset.path});
      button.replaceWith(el("span", {class: "muted"}, `replays with the next run (${data.replayed})`));
    } catch (e) { button.disabled = false; button.after(el("span", {class: "error"}, e.message)); }
  }));

  if (!canEdit) return;

  // -- the code editor: a textarea with a line-number gutter and an error line ---------------
  const code = document.getElementById("code");
  const gutter = document.getElementById("gutter");
  const band = document.getElementById("error-band");
  let errorLine = null;
  function lineHeight() { return parseFloat(getComputedStyle(code).lineHeight) || 18; }
  function renderGutter() {
    const count = code.value.split("\n").length;
    gutter.replaceChildren(...Array.from({length: count}, (_, i) =>
      el("span", {class: i + 1 === errorLine ? "ln error-line" : "ln"}, String(i + 1))));
    gutter.scrollTop = code.scrollTop;
    if (errorLine) {
      band.hidden = false;
      band.style.top = `${(errorLine - 1) * lineHeight() - code.scrollTop + 6}px`;
    } else band.hidden = true;
  }
  function markError(line) {
    errorLine = line || null;
    if (errorLine) code.scrollTop = Math.max(0, (errorLine - 5) * lineHeight());  // show the line
    renderGutter();
  }
  code.addEventListener("input", () => { if (errorLine) markError(null); else renderGutter(); });
  code.addEventListener("scroll", renderGutter);
  code.addEventListener("keydown", (event) => {
    if (event.key === "Tab") {
      event.preventDefault();
      code.setRangeText("    ", code.selectionStart, code.selectionEnd, "end");
      renderGutter();
    }
  });
  renderGutter();

  // -- start from the flow's code or a library function ------------------------------------
  const flowCode = code.value;
  const picker = document.getElementById("code-source");
  const functionName = document.getElementById("function-name");
  const packages = document.getElementById("packages");
  const flowPackages = packages.value;
  api("GET", "/api/functions").then((functions) => {
    for (const fn of functions) for (const v of fn.versions) picker.append(el("option", {value: `${fn.name}@${v}`}, `library: ${fn.name}@${v}`));
  }).catch(() => {});
  picker.addEventListener("change", async () => {
    if (picker.value === "flow") { code.value = flowCode; packages.value = flowPackages; markError(null); return; }
    const [name, version] = picker.value.split("@");
    const data = await api("GET", `/api/functions/${encodeURIComponent(name)}`);
    const entry = data.versions.find((v) => String(v.version) === version);
    code.value = entry.code; functionName.value = entry.function_name;
    packages.value = (entry.packages || []).join(",");
    document.getElementById("function-save-name").value = name;
    markError(null);
  });

  // -- Test ------------------------------------------------------------------------------------
  const status = document.getElementById("test-status");
  const result = document.getElementById("test-result");
  const button = document.getElementById("test-button");

  function table(rows) {
    const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))].slice(0, 20);
    return el("table", {class: "preview-table small"},
      el("thead", {}, el("tr", {}, keys.map((k) => el("th", {}, k)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, keys.map((k) => el("td", {}, typeof r[k] === "object" && r[k] !== null ? JSON.stringify(r[k]) : (r[k] === undefined ? "" : String(r[k]))))))));
  }
  function grid(columns, types, rows) {
    const heads = columns.map((c, i) => el("th", {}, c, types && types[i] ? el("span", {class: "muted small"}, ` ${types[i]}`) : null));
    return el("table", {class: "preview-table small"},
      el("thead", {}, el("tr", {}, heads)),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((v) => el("td", {}, v))))));
  }
  function previewNode(p) {
    const extra = [];
    if (p.records !== null && p.records !== undefined) extra.push(`${p.records} records`);
    else if (p.total_rows !== null && p.total_rows !== undefined) extra.push(`${p.total_rows} rows`);
    if (p.compression) extra.push(p.compression);
    const head = el("h4", {}, `${p.name} — ${p.size} bytes${extra.map((e) => `, ${e}`).join("")}${p.truncated ? " (first records)" : ""}`);
    const note = p.note ? el("p", {class: "muted small preview-note"}, p.note) : null;
    const lines = p.lines || [];
    const text = el("pre", {class: "preview-text"}, lines.join("\n") + (p.truncated ? "\n…" : ""));
    if (p.columns && p.columns.length) {
      // A table the engine built (JSON Lines/JSON/CSV here, Parquet/Arrow/Avro in the flow's environment).
      const raw = lines.length ? el("details", {}, el("summary", {}, "raw lines"), text) : null;
      return el("div", {class: "preview", "data-format": p.format}, head, note, grid(p.columns, p.types, p.rows || []), raw);
    }
    let rows = null;
    try {  // results of an older engine: lines only
      const parsed = lines.map((line) => JSON.parse(line));
      if (parsed.length && parsed.every((r) => r && typeof r === "object" && !Array.isArray(r))) rows = parsed;
    } catch (e) { rows = null; }
    return el("div", {class: "preview", "data-format": p.format || "text"}, head, note, rows ? table(rows) : null, rows ? el("details", {}, el("summary", {}, "raw lines"), text) : text);
  }
  function show(data) {
    result.replaceChildren();
    result.classList.remove("stale");
    delete result.dataset.staleNote;
    markError(data.ok ? null : data.error_line);
    if (data.error) {
      result.append(el("div", {class: "error-box", id: "test-error"},
        el("strong", {}, data.error_line ? `Error at line ${data.error_line}: ` : "Error: "), data.error,
        data.traceback ? el("details", {}, el("summary", {}, "traceback"), el("pre", {}, data.traceback)) : null));
    }
    if (data.previews) {
      result.append(el("h3", {}, "Output preview"));
      if (!data.previews.length) result.append(el("p", {class: "muted"}, "The function produced no output for this file."));
      data.previews.forEach((p) => result.append(previewNode(p)));
    }
    const facts = [];
    for (const [k, v] of Object.entries(data.insights || {})) facts.push([`insight ${k}`, JSON.stringify(v)]);
    for (const [k, v] of Object.entries(data.counters || {})) facts.push([`counter ${k}`, String(v)]);
    if (facts.length) result.append(el("h3", {}, "Insights and counters"), el("dl", {class: "facts", id: "test-insights"}, facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
    if (data.notifications && data.notifications.length) {
      result.append(el("h3", {}, "Notifications that would be sent"),
        el("ul", {id: "test-notifications"}, data.notifications.map((n) => el("li", {}, `[${n.level}] ${n.message}`))));
    }
    const known = [];  // only what this answer knows (a failed package build has no sandbox or file)
    if (data.packages) known.push(`${data.state === "failed" ? "Packages that failed to install" : "Packages in effect"}: ${data.packages.length ? data.packages.join(", ") : "(none)"}`);
    if (data.sandbox) known.push(`sandbox: ${data.sandbox}`);
    if (data.file) known.push(`file: ${data.file}`);
    if (known.length) result.append(el("p", {class: "muted small", id: "test-facts"}, known.join(" · ")));
    if (data.log && data.log.length) {
      const dropped = data.log_dropped ? `; ${data.log_dropped} lines dropped in the middle` : "";
      result.append(el("details", {id: "test-log"}, el("summary", {}, `log (${data.log.length - (data.log_dropped ? 1 : 0)} lines kept${dropped})`),
        el("pre", {class: "log"}, data.log.map((l) => `${l.level.toUpperCase()} ${l.message}`).join("\n"))));
    }
  }
  // A result on screen that is not this Test's: greyed, saying so, until the new one replaces it.
  function markStale(note) {
    if (!result.children.length) return;
    result.classList.add("stale");
    result.dataset.staleNote = note;
  }
  const cancelButton = document.getElementById("cancel-button");
  const elapsed = document.getElementById("test-elapsed");
  let running = null;  // the test_id of the Test in the queue or running
  function waiting(data) {
    running = data.test_id;
    cancelButton.hidden = false;
    status.dataset.state = data.state;
    status.textContent = data.state === "queued"
      ? `Queued: position ${data.position} — you run one Test at a time, ${data.running} running on this server…`
      : "Testing…";
  }
  async function runTest() {
    button.disabled = true;
    markStale("Previous result — a new Test is running");
    const began = performance.now();
    const seconds = () => ((performance.now() - began) / 1000).toFixed(2);
    const timer = setInterval(() => { elapsed.textContent = `${((performance.now() - began) / 1000).toFixed(1)} s`; }, 100);
    status.textContent = "Testing…";
    status.dataset.state = "starting";  // "running" once the server says so (it may queue or build first)
    const body = {
      code: code.value, function_name: functionName.value, packages: packages.value,
      test_file: document.getElementById("test-file").value,
      runtime_config: document.getElementById("runtime-config").value,
    };
    try {
      let data = await api("POST", flowPath + "/test", body);
      while (["building", "queued", "running"].includes(data.state)) {
        if (data.state === "building") {
          status.dataset.state = "building";
          status.textContent = `Building the flow's environment (${data.packages.join(", ") || "no packages"}) the first time: ${data.seconds} s so far; the test runs as soon as it is ready…`;
          await sleep(1500);
          data = await api("POST", flowPath + "/test", body);
          continue;
        }
        waiting(data);
        data = await api("GET", `/api/tests/${encodeURIComponent(data.test_id)}`);
      }
      show(data);
      status.dataset.state = data.state;
      status.textContent = data.ok ? `Tested in ${seconds()} s — nothing was written.`
        : data.state === "cancelled" ? `Cancelled after ${seconds()} s.` : `Failed after ${seconds()} s.`;
      status.dataset.seconds = seconds();
    } catch (e) {
      status.dataset.state = "error";
      status.textContent = result.children.length ? `${e.message} — the result below is from an earlier Test.` : e.message;
      markStale("Stale — from an earlier Test; this request failed");
    } finally {
      clearInterval(timer);
      elapsed.textContent = "";
      running = null;
      cancelButton.hidden = true;
      button.disabled = false;
    }
  }
  cancelButton.addEventListener("click", async () => {
    if (!running) return;
    const id = running;
    cancelButton.disabled = true;
    status.textContent = "Cancelling…";  // the Test's own poll shows the end
    try {
      await api("POST", `/api/tests/${encodeURIComponent(id)}/cancel`, {});
    } catch (e) { if (running === id) status.textContent = e.message; }
    finally { cancelButton.disabled = false; }
  });
  button.addEventListener("click", runTest);

  // -- Save as reusable function ----------------------------------------------------------------
  const saveStatus = document.getElementById("save-status");
  document.getElementById("save-button").addEventListener("click", async () => {
    const name = document.getElementById("function-save-name").value.trim();
    saveStatus.className = "";
    if (!name) { saveStatus.textContent = "Give the function a name."; saveStatus.className = "error"; return; }
    try {
      const data = await api("POST", flowPath + "/functions", {name, code: code.value, function_name: functionName.value, packages: packages.value});
      saveStatus.textContent = data.unchanged ? `Unchanged, still ${data.ref}` : `Saved ${data.ref}`;
      saveStatus.className = "ok";
      saveStatus.dataset.ref = data.ref;
      if (!data.unchanged) picker.append(el("option", {value: data.ref}, `library: ${data.ref}`));
    } catch (e) {
      saveStatus.textContent = e.message; saveStatus.className = "error";
      const m = /line (\d+)/.exec(e.message); if (m) markError(Number(m[1]));
    }
  });
})();
