// The flow editor (New, Edit, a copy) and a flow's history: vanilla JS, no build step. Every value
// goes into the page as text (textContent, input values), never as HTML. Requests are same-origin
// with the UI's _token cookie; writes send JSON. Activate/Pause call Airflow's own API the same way
// Airflow's UI does (PATCH /api/v2/dags/{dag_id} with the cookie), so Airflow checks the rights.
(function () {
  "use strict";
  const base = (window.BYO && window.BYO.base) || "/byo";
  const airflow = base.replace(/\/byo\/?$/, "");  // Airflow's own prefix on the same origin
  const airflowApi = (window.BYO && window.BYO.airflowApi) || `${airflow}/api/v2`;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

  function h(tag, props, ...kids) {
    const node = Object.assign(document.createElement(tag), props || {});
    node.append(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false)
      .map((k) => (k instanceof Node ? k : String(k))));
    return node;
  }

  async function call(method, url, body) {
    const init = {method, credentials: "same-origin", headers: {Accept: "application/json"}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try { response = await fetch(url, init); } catch (e) { return {ok: false, status: 0, data: {detail: `no answer: ${e.message}`}}; }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return {ok: response.ok, status: response.status, data};
  }
  const byo = (method, path, body) => call(method, base + path, body);

  function message(answer) {
    const detail = answer.data && (answer.data.detail !== undefined ? answer.data.detail : answer.data.message);
    if (typeof detail === "string") return detail;
    if (detail && typeof detail.detail === "string") return detail.detail;
    return `${answer.status}: ${detail ? JSON.stringify(detail) : "the server gave no reason"}`;
  }

  // A 422's field errors, whichever way they are wrapped: {errors}, {detail: {errors}} or pydantic's list.
  function errorsOf(answer) {
    const data = answer.data || {};
    const list = data.errors || (data.detail && data.detail.errors) || (Array.isArray(data.detail) ? data.detail : null);
    if (!list) return [{field: "", message: message(answer)}];
    return list.map((e) => ({
      field: e.field || (Array.isArray(e.loc) ? e.loc.filter((part) => part !== "body" && part !== "spec").join(".") : ""),
      message: e.message || e.msg || String(e), line: e.line,
    }));
  }

  // -- inline field errors ---------------------------------------------------------------------
  const shown = (node) => !node.closest("[hidden]");
  function inputFor(field) {
    let path = (field || "").replace(/^spec\./, "");
    while (path) {
      const node = [...document.querySelectorAll(`[data-field="${CSS.escape(path)}"]`)].find(shown);
      if (node) return node;
      path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
    }
    return null;
  }
  function clearErrors() {
    document.querySelectorAll(".field-error").forEach((n) => n.remove());
    document.querySelectorAll(".invalid").forEach((n) => { n.classList.remove("invalid"); n.removeAttribute("aria-invalid"); });
    const box = $("form-errors");
    if (box) { box.hidden = true; box.replaceChildren(); }
  }
  function showErrors(errors) {
    clearErrors();
    const box = $("form-errors");
    const items = [];
    let first = null;
    for (const error of errors) {
      const where = error.line ? ` (spec line ${error.line})` : "";
      const text = `${error.message}${where}`;
      const input = inputFor(error.field);
      if (input) {
        input.classList.add("invalid");
        input.setAttribute("aria-invalid", "true");
        const note = h("span", {className: "field-error", textContent: text});
        note.dataset.field = error.field;
        (input.closest("label") || input.parentNode).append(note);
        first = first || input;
      }
      items.push(h("li", {}, error.field ? h("code", {textContent: error.field}) : null, error.field ? ": " : "", text));
    }
    if (box) { box.replaceChildren(h("strong", {textContent: "The flow was not saved:"}), h("ul", {}, items)); box.hidden = false; }
    if (first) first.focus();
  }

  // -- the code editor: a textarea with a line-number gutter and a marked line ---------------------
  function codeEditor() {
    const code = $("code"), gutter = $("gutter"), band = $("error-band");
    const state = {line: null, escaped: false};
    const rowHeight = () => parseFloat(getComputedStyle(code).lineHeight) || 18;
    function paint() {
      const lines = code.value.split("\n").length;
      const frag = document.createDocumentFragment();
      for (let n = 1; n <= lines; n += 1) {
        frag.append(h("span", {className: n === state.line ? "ln error-line" : "ln", textContent: String(n)}));
      }
      gutter.replaceChildren(frag);
      gutter.scrollTop = code.scrollTop;
      band.hidden = !state.line;
      if (state.line) band.style.top = `${(state.line - 1) * rowHeight() - code.scrollTop + 6}px`;
    }
    code.addEventListener("input", () => { state.line = null; paint(); });
    code.addEventListener("scroll", paint);
    code.addEventListener("keydown", (event) => {
      // Tab indents; Escape then Tab leaves the editor (keyboard users are never trapped).
      if (event.key === "Escape") { state.escaped = true; return; }
      if (event.key === "Tab" && !state.escaped && !event.shiftKey) {
        event.preventDefault();
        code.setRangeText("    ", code.selectionStart, code.selectionEnd, "end");
        paint();
      }
      state.escaped = false;
    });
    paint();
    return {
      paint,
      mark(line) {
        state.line = line || null;
        if (state.line) code.scrollTop = Math.max(0, (state.line - 4) * rowHeight());
        paint();
      },
    };
  }

  // -- runtime variables JSON, checked as it is typed ----------------------------------------------
  function jsonWhere(text, reason) {
    const direct = /line (\d+) column (\d+)/.exec(reason);
    if (direct) return {line: Number(direct[1]), column: Number(direct[2])};
    const at = /position (\d+)/.exec(reason);
    const offset = at ? Number(at[1]) : (/end of (JSON|data)/i.test(reason) ? text.length : null);
    if (offset === null) return null;
    const before = text.slice(0, offset).split("\n");
    return {line: before.length, column: before[before.length - 1].length + 1};
  }
  // The parsed object, or undefined (and the reason shown at its line and column).
  function runtimeConfig() {
    const text = $("runtime-config").value, out = $("runtime-config-check");
    if (!text.trim()) { out.textContent = ""; out.className = "small"; return {}; }
    try {
      const value = JSON.parse(text);
      if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error("it must be a JSON object: {...}");
      out.textContent = "Valid JSON.";
      out.className = "small ok";
      return value;
    } catch (e) {
      const where = jsonWhere(text, e.message);
      out.textContent = `${where ? `Line ${where.line}, column ${where.column}: ` : ""}${e.message}`;
      out.className = "small error";
      return undefined;
    }
  }

  // -- the history page: versions, a diff against the current file, Revert ------------------------
  function historyPage(node) {
    const name = node.dataset.name, canWrite = node.dataset.canWrite === "true";
    const state = {hash: null, version: null};
    const say = (id, text, className) => { const n = $(id); n.textContent = text; n.className = className || ""; n.hidden = false; return n; };
    function diffNode(text) {
      return (text || "").split("\n").map((line) => h("span", {
        className: line.startsWith("@@") ? "hunk" : line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : "",
        textContent: `${line}\n`,
      }));
    }
    async function show(version) {
      const answer = await byo("GET", `/api/specs/${enc(name)}/history/${enc(version)}`);
      if (!answer.ok) { say("history-error", message(answer), "error-box"); return; }
      const v = answer.data;
      state.version = v.version;
      document.querySelectorAll("#versions tr[data-version]").forEach((tr) => tr.classList.toggle("selected", tr.dataset.version === String(v.version)));
      $("version-panel").hidden = false;
      $("version-title").textContent = `Version ${v.version}, saved by ${v.author || "?"} at ${String(v.at || "").replace("T", " ").slice(0, 19)}`;
      $("diff").replaceChildren(...(v.diff ? diffNode(v.diff) : [h("span", {className: "muted", textContent: "The same as the current file."})]));
      $("version-yaml").textContent = v.yaml || "";
      say("revert-status", "", "");
    }
    async function load() {
      const answer = await byo("GET", `/api/specs/${enc(name)}`);
      const body = document.querySelector("#versions tbody");
      if (!answer.ok) { body.replaceChildren(); say("history-error", message(answer), "error-box"); return; }
      state.hash = answer.data.hash;
      const versions = [...(answer.data.history || [])].reverse();
      body.replaceChildren(...(versions.length ? versions.map((v) => {
        const current = v.hash === state.hash ? h("span", {className: "badge active", textContent: "current"}) : null;
        const row = h("tr", {}, h("td", {}, `v${v.version} `, current, h("div", {className: "muted small", textContent: v.action || ""})), h("td", {textContent: v.author || "?"}),
          h("td", {textContent: String(v.at || "").replace("T", " ").slice(0, 19)}),
          h("td", {}, canWrite ? h("button", {type: "button", className: "show-version", textContent: "Show the diff", onclick: () => show(v.version)}) : null));
        row.dataset.version = String(v.version);
        return row;
      }) : [h("tr", {}, h("td", {colSpan: 4, className: "muted", textContent: "No versions yet: the page keeps one at each save, revert and delete."}))]));
    }
    async function revert() {
      const answer = await byo("POST", `/api/specs/${enc(name)}/revert`, {version: state.version, hash: state.hash});
      if (answer.status === 409) { say("revert-status", "The flow was changed since this page loaded it: the list is reloaded, try again.", "error"); await load(); return; }
      if (!answer.ok) { say("revert-status", `Not reverted: ${message(answer)}`, "error"); return; }
      const reverted = state.version;
      await load();
      await show(reverted);
      say("revert-status", `Reverted: version ${reverted}'s content is the current file again (saved as a new version).`, "ok");
    }
    if (canWrite && $("revert-button")) $("revert-button").addEventListener("click", revert);
    load();
  }
  const historyNode = document.getElementById("history-page");
  if (historyNode) historyPage(historyNode);

  window.BYOEditor = {h, call, byo, message, errorsOf, showErrors, clearErrors, codeEditor, runtimeConfig, sleep, enc, airflow, airflowApi, base};
})();
