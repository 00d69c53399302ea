// vrec serve: the page. Plain JavaScript, no build step, no external assets.
// Talks to the JSON API of vrec/serve.py (see README, "vrec serve"). Every text from the catalog is
// put into the page with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  // --- small helpers -------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "dataset") for (const [k, v] of Object.entries(value)) { if (v != null) el.dataset[k] = v; }
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child == null || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }
  // for the page's other scripts (collections.js, panel.js, results.js, ...), loaded after this one
  window.vrecDom = {h, call: callJSON};

  // append children, leaving out the missing ones (null, false)
  const put = (parent, ...children) =>
    parent.append(...children.flat(Infinity).filter((c) => c != null && c !== false));

  // "a/b c" -> "a/b%20c": each path segment encoded, the slashes kept (ids may contain '/')
  const encodeId = (id) => String(id).split("/").map(encodeURIComponent).join("/");

  // Filters as typed: separated by ';' or by ',' outside parentheses ("colour in (red,black), price<200")
  function splitFilters(text) {
    const out = [];
    let depth = 0, cur = "";
    for (const ch of text || "") {
      if (ch === "(") depth++;
      if (ch === ")") depth = Math.max(0, depth - 1);
      if ((ch === ";" || ch === ",") && depth === 0) { out.push(cur); cur = ""; continue; }
      cur += ch;
    }
    out.push(cur);
    return out.map((s) => s.trim()).filter(Boolean);
  }

  // The column a typed filter is on (lower case) and its operator: "price<200" -> {column: "price", op: "<"}
  function filterParts(expr) {
    let m = /^\s*tag\s*:\s*(.+?)\s*$/i.exec(expr);
    if (m) return {column: "tags", op: "tag", values: [m[1].toLowerCase()]};
    m = /^\s*([\w.-]+)\s+(not\s+in|in)\s*\((.*)\)\s*$/i.exec(expr);
    if (m) return {column: m[1].toLowerCase(), op: m[2].toLowerCase().replace(/\s+/g, " "),
                   values: m[3].split(",").map((v) => v.trim()).filter(Boolean)};
    m = /^\s*([\w.-]+)\s*(!=|<=|>=|==|=|<|>)\s*(.*?)\s*$/.exec(expr);
    if (m) return {column: m[1].toLowerCase(), op: m[2], values: [m[3]]};
    return null;
  }

  const unquote = (v) => String(v).replace(/^(['"])(.*)\1$/, "$2").toLowerCase();
  const sameFilter = (a, b) => a.replace(/\s+/g, "").toLowerCase() === b.replace(/\s+/g, "").toLowerCase();

  // The typed filters less those selecting one value of a column (a facet's value clicked again)
  function withoutValue(filters, column, value, expr) {
    if (filters.some((f) => sameFilter(f, expr))) return filters.filter((f) => !sameFilter(f, expr));
    const col = column.toLowerCase(), want = String(value).toLowerCase();
    const out = [];
    for (const f of filters) {
      const p = filterParts(f);
      if (!p || p.column !== col) { out.push(f); continue; }
      if ((p.op === "=" || p.op === "==" || p.op === "tag") && unquote(p.values[0]) === want) continue;
      if (p.op === "in") {
        const rest = p.values.filter((v) => unquote(v) !== want);
        if (rest.length) out.push(`${column} in (${rest.join(",")})`);
        continue;
      }
      out.push(f);
    }
    return out;
  }

  // The typed filters less the bounds (<, <=, >, >=) on a column
  const withoutRange = (filters, column) =>
    filters.filter((f) => { const p = filterParts(f); return !p || p.column !== column.toLowerCase() || !/[<>]/.test(p.op); });

  const fmtNumber = (x) => (Number.isInteger(x) ? x.toLocaleString() : x.toLocaleString(undefined, {maximumFractionDigits: 2}));
  const fmtPct = (x) => (typeof x === "number" ? Math.round(x * 100) + "%" : "—");

  const fmtScore = (x) => (typeof x === "number" ? x.toFixed(3) : "—");

  function fmtProbability(p) {
    if (typeof p !== "number") return null;
    const pct = p * 100;
    if (pct < 0.1) return "<0.1%";
    if (pct < 10) return pct.toFixed(1) + "%";
    return Math.round(pct) + "%";
  }

  function priceOf(meta) {
    for (const [key, value] of Object.entries(meta || {})) {
      if (key.toLowerCase() !== "price" || value == null || value === "") continue;
      const n = Number(value);
      if (!Number.isFinite(n)) return String(value);
      return Number.isInteger(n) ? n.toLocaleString() : n.toLocaleString(undefined, {minimumFractionDigits: 2, maximumFractionDigits: 2});
    }
    return null;
  }

  // two short descriptive values (category, colour, ...) for a card's second line
  const SKIP_META = new Set(["title", "productdisplayname", "name", "file", "path", "price", "id", "tags", "year"]);
  function factsOf(meta) {
    const out = [];
    for (const [key, value] of Object.entries(meta || {})) {
      if (SKIP_META.has(key.toLowerCase()) || value == null) continue;
      const text = String(value);
      if (!text || text.length > 24 || typeof value === "object") continue;
      if (!out.includes(text)) out.push(text);
      if (out.length === 2) break;
    }
    return out;
  }

  function filenameFrom(disposition) {
    const m = /filename="?([^";]+)"?/i.exec(disposition || "");
    return m ? m[1] : null;
  }

  // --- talking to the server -------------------------------------------------------------------

  // an error the server (or the network) answered: its one-sentence message and the HTTP status (0: no answer)
  class ApiError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  async function api(path, init) {
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError("Cannot reach the vrec server; is 'vrec serve' still running?", 0);
    }
    if (response.ok) return response;
    let message = `The server answered ${response.status} ${response.statusText}.`;
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") message = body.error;
    } catch (e) { /* not JSON: keep the status line */ }
    throw new ApiError(message, response.status);
  }

  // the answer's JSON (null when it has none); errors as api()'s
  async function callJSON(path, init) {
    const response = await api(path, init);
    try { return await response.json(); } catch (e) { return null; }
  }

  const getJSON = async (path) => (await api(path)).json();

  function query(params) {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value == null || value === "") continue;
      for (const v of Array.isArray(value) ? value : [value]) q.append(key, v);
    }
    const text = q.toString();
    return text ? "?" + text : "";
  }

  // --- state: a stack of views, mirrored in the browser's history -------------------------------

  const state = {
    health: null,
    stack: [],   // views; state.at is the one shown
    at: -1,
    compare: false,  // side by side on for similar views
    columns: [],     // metadata columns to filter on
    labels: null,    // categorical columns, for the comparison's label chooser (asked once)
    label: null,     // the label column chosen for comparisons
    seq: 0,          // the latest request; older answers are dropped
  };
  const current = () => state.stack[state.at] || null;

  function options() {
    return {k: Number($("k").value) || 12, model: $("model").value || null, filters: splitFilters($("filters").value),
            mode: $("mode").disabled ? null : $("mode").value || null};  // text search's mode (modes.js)
  }

  function setOptions(opts) {
    if (!opts) return;
    $("k").value = String(opts.k);
    if (!Array.from($("k").options).some((o) => o.value === String(opts.k))) {
      $("k").append(h("option", {}, String(opts.k)));
      $("k").value = String(opts.k);
    }
    if (opts.model && Array.from($("model").options).some((o) => o.value === opts.model)) $("model").value = opts.model;
    $("filters").value = (opts.filters || []).join(", ");
    if (opts.mode && !$("mode").disabled && $("mode").querySelector(`option[value="${CSS.escape(opts.mode)}"]`)) $("mode").value = opts.mode;
  }

  // the address a view can be reloaded from (photo searches cannot: the photo is not in the URL)
  function urlOf(view) {
    const o = view.opts || {};
    const common = {k: o.k !== 12 ? o.k : null, model: o.model && o.model !== state.health?.default_model ? o.model : null,
                    filter: o.filters};
    if (view.kind === "text") return "/" + query({q: view.q, mode: o.mode !== state.health?.text_mode ? o.mode : null, ...common});
    if (view.kind === "image" && view.photoId) {  // the upload kept by the server: an address while it runs
      const steered = view.plus || view.minus;
      return "/" + query({photo: view.photoId, crop: view.crop || null, plus: view.plus || null, minus: view.minus || null,
                          weight: steered && view.weight !== 1 ? view.weight : null, ...common});
    }
    if (view.kind === "similar") {
      return "/" + query({similar: view.id, compare: view.compare ? "1" : null,
                          label: view.compare && view.label && view.label !== state.labels?.[0] ? view.label : null, ...common});
    }
    return "/";
  }

  // the facets of a list shown (null when they cannot be had: the results are shown without them)
  async function loadFacets(kind, q, o, crop) {
    try {
      return await getJSON("/api/facets" + query({q, kind, k: o.k, model: o.model, filter: o.filters, crop,
                                                  mode: kind === "text" ? o.mode : null}));
    } catch (e) {
      return null;
    }
  }

  // the categorical columns, once: the label chooser of comparisons offers them
  async function labelColumns() {
    if (state.labels) return state.labels;
    try {
      const f = await getJSON("/api/facets" + query({max_values: 1}));
      state.labels = f.categorical.map((c) => c.column);
    } catch (e) {
      return [];  // asked again next time
    }
    return state.labels;
  }

  async function load(view) {
    const o = view.opts;
    if (view.kind === "text") {
      const [data, facets] = await Promise.all([
        getJSON("/api/search/text" + query({q: view.q, k: o.k, model: o.model, filter: o.filters, mode: o.mode})),
        loadFacets("text", view.q, o)]);
      view.data = data;
      view.facets = facets;
    } else if (view.kind === "image" && !view.file) {  // a kept upload, from the address: asked again by its id
      const steer = view.plus || view.minus ? {plus: view.plus || null, minus: view.minus || null, weight: view.weight} : {};
      const [data, facets] = await Promise.all([
        getJSON("/api/search/photo/" + encodeURIComponent(view.photoId) +
                query({k: o.k, model: o.model, filter: o.filters, crop: view.crop || null, ...steer})),
        steer.plus || steer.minus ? null : loadFacets("photo", view.photoId, o, view.crop)]);  // steered: not the photo's
      view.data = data;
      view.facets = facets;
      view.fileName = view.data.query;
      view.preview = "/api/search/photo/" + encodeURIComponent(view.photoId) + "/image";
    } else if (view.kind === "image") {
      const form = new FormData();
      form.append("file", view.file, view.fileName);
      if (view.plus) form.append("plus", view.plus);
      if (view.minus) form.append("minus", view.minus);
      if (view.plus || view.minus) form.append("weight", String(view.weight));
      form.append("k", String(o.k));
      if (o.model) form.append("model", o.model);
      for (const f of o.filters) form.append("filter", f);
      view.data = await (await api("/api/search/image", {method: "POST", body: form})).json();
      view.photoId = view.data.photo_id;
      view.facets = view.plus || view.minus ? null : await loadFacets("photo", view.photoId, o);
    } else if (view.kind === "similar") {
      if (view.compare) {
        const hl = state.health;
        const labels = await labelColumns();
        if (!view.label || !labels.includes(view.label)) view.label = state.label && labels.includes(state.label) ? state.label : labels[0] || null;
        view.cmp = await getJSON("/api/compare/" + encodeId(view.id) +
                                 query({left: hl.compare_with, right: hl.default_model, k: o.k, filter: o.filters,
                                        label: view.label, summary: view.withSummary ? "true" : null}));
        view.item = view.item || view.cmp.item;
      } else {
        const [data, facets] = await Promise.all([
          getJSON("/api/similar/" + encodeId(view.id) + query({k: o.k, model: o.model, filter: o.filters})),
          loadFacets("similar", view.id, o)]);
        view.data = data;
        view.facets = facets;
        if (!view.item || (state.health.photos && !view.item.photo_ids)) {  // a product's photos, for the strip
          view.item = await getJSON("/api/items/" + encodeId(view.id));
        }
      }
    }
  }

  // Load a view, then show it (pushed on the history, or replacing the one shown).
  async function go(view, {replace = false} = {}) {
    const seq = ++state.seq;
    const focused = document.activeElement;
    const hadFocusInResults = $("main").contains(focused);
    // a control of the view's header (steering fields, the toggle) gets the focus back after the update
    const again = hadFocusInResults && focused && (focused.id ? "#" + CSS.escape(focused.id)
      : focused.name ? `#view-head [name="${CSS.escape(focused.name)}"]` : null);
    hideError();
    busy(true);
    document.dispatchEvent(new CustomEvent("vrec:searching", {detail: {view}}));  // progress.js: the photo, at once
    try {
      await load(view);
    } catch (e) {
      if (seq !== state.seq) return false;
      const badFilter = view.opts.filters.length ? await filterError(view.opts.filters) : null;
      if (seq !== state.seq) return false;
      busy(false, {failed: true});
      markFilters(badFilter);
      showError(e.message);
      return false;
    }
    if (seq !== state.seq) return false;
    busy(false);
    if (state.at < 0) {  // the first view of the page: it takes the entry the page was opened with
      state.stack = [view];
      state.at = 0;
      history.replaceState({depth: 0}, "", urlOf(view));
    } else if (replace) {
      state.stack[state.at] = view;
      history.replaceState({depth: state.at}, "", urlOf(view));
    } else {
      state.stack = state.stack.slice(0, state.at + 1);
      state.stack.push(view);
      state.at = state.stack.length - 1;
      history.pushState({depth: state.at}, "", urlOf(view));
    }
    render(view);
    const target = replace && again ? document.querySelector(again) : null;
    if (target) target.focus();
    else if (hadFocusInResults) focusHeading();  // the card clicked is gone: start from the new heading
    return true;
  }

  function back() {
    if (state.at > 0) history.back();
  }

  window.addEventListener("popstate", (event) => {
    const depth = event.state && Number.isInteger(event.state.depth) ? event.state.depth : -1;
    const view = state.stack[depth];
    if (view && urlOf(view) === location.pathname + location.search) {
      state.seq++;  // an answer still on its way is no longer wanted
      busy(false);
      hideError();
      state.at = depth;
      render(view);
      restoreFocus(view);
    } else {
      route({replace: true});
    }
  });

  // The view the address asks for (?q=..., ?similar=ID[&compare=1]), or the start page.
  async function route({replace = false} = {}) {
    const p = new URLSearchParams(location.search);
    const opts = {k: Number(p.get("k")) || 12, model: p.get("model") || state.health.default_model,
                  filters: p.getAll("filter"), mode: p.get("mode") || state.health.text_mode};
    setOptions(opts);
    opts.mode = options().mode;  // one the chooser offers (an unknown one in the address: the default)
    let view = null;
    if (p.get("q")) {
      $("q").value = p.get("q");
      view = {kind: "text", q: p.get("q"), opts};
    } else if (p.get("photo")) {
      view = {kind: "image", photoId: p.get("photo"), fileName: "your photo", crop: p.get("crop") || null, plus: p.get("plus") || "",
              minus: p.get("minus") || "", weight: Number(p.get("weight")) || 1, opts};
    } else if (p.get("similar")) {
      state.compare = p.get("compare") === "1" && !!state.health.compare_with;
      if (p.get("label")) state.label = p.get("label");
      view = {kind: "similar", id: p.get("similar"), compare: state.compare, label: p.get("label") || null, opts};
    }
    if (view) {
      const shown = await go(view, {replace});
      if (shown || state.at >= 0) return shown;
    }
    const home = {kind: "home", opts};
    if (replace && state.at >= 0) state.stack[state.at] = home;
    else { state.stack = [home]; state.at = 0; }
    history.replaceState({depth: state.at}, "", "/");
    render(home);
    return !view;
  }

  // --- actions ---------------------------------------------------------------------------------

  function searchText() {
    const q = $("q").value.trim();
    if (!q) {
      showError("Type what you are looking for first, e.g. “red handbag”; or search by photo.");
      $("q").focus();
      return;
    }
    go({kind: "text", q, opts: options()});
  }

  function searchPhoto(file, steer) {
    const view = current();
    if (!file && steer && view && view.kind === "image" && view.photoId) {  // a kept upload, steered anew
      go({kind: "image", photoId: view.photoId, fileName: view.fileName, preview: view.preview, crop: view.crop, ...steer,
          opts: options()}, {replace: true});
      return;
    }
    if (!file) return;
    const old = view && view.kind === "image" ? view : null;
    const s = steer || {plus: "", minus: "", weight: 1};
    const preview = old && old.file === file ? old.preview : URL.createObjectURL(file);
    go({kind: "image", file, fileName: file.name || "pasted photo", preview, ...s, opts: options()},
       {replace: !!steer && !!old});
  }

  // crop.js: the photo search shown, again on a region of its photo ("x,y,w,h" fractions; null: the whole photo)
  function cropPhoto(box) {
    const v = current();
    if (!v || v.kind !== "image" || !v.photoId) return;
    go({kind: "image", photoId: v.photoId, fileName: v.fileName, preview: v.preview, crop: box || null,
        plus: v.plus, minus: v.minus, weight: v.weight, opts: options()});
  }

  function showSimilar(result) {
    const view = current();
    if (view) view.lastFocus = result.id;
    const opts = options();
    go({kind: "similar", id: result.id, item: result, compare: state.compare && !!state.health.compare_with, opts});
  }

  // for panel.js ("All similar items" from an item's panel) and crop.js (search a region of the photo)
  window.vrecApp = {showSimilar, current, cropPhoto};

  function toggleCompare() {
    const view = current();
    if (!view || view.kind !== "similar") return;
    state.compare = !view.compare;
    const next = {...view, compare: state.compare, data: view.data, cmp: null, withSummary: false};
    if (!state.compare && next.data) {  // already loaded: no request
      state.stack[state.at] = next;
      history.replaceState({depth: state.at}, "", urlOf(next));
      render(next);
      $("compare-toggle")?.focus();
      return;
    }
    go(next, {replace: true});
  }

  // Re-run the view shown with the options now set (k, model, filters).
  function rerun() {
    const view = current();
    if (!view || view.kind === "home") {
      if ($("q").value.trim()) searchText();
      return;
    }
    go({...view, opts: options(), data: null, cmp: null, facets: null}, {replace: true});
  }

  // A facet clicked: its filters join the typed ones (or leave them, when it was selected), and the view is run again
  function applyFilters(filters) {
    $("filters").value = filters.join(", ");
    rerun();
  }

  // The comparison again with another label column, or with the catalog-wide figures
  function recompare(changes) {
    const view = current();
    if (!view || view.kind !== "similar" || !view.compare) return;
    if ("label" in changes) state.label = changes.label;
    go({...view, ...changes, cmp: null}, {replace: true});
  }

  // The filters' own mistake, if they have one (asked of the whole catalog's facets: quick), else null
  async function filterError(filters) {
    try {
      await getJSON("/api/facets" + query({filter: filters, max_values: 1}));
      return null;
    } catch (e) {
      return e.message;
    }
  }

  function markFilters(message) {
    const field = $("filters"), text = $("filter-error");
    if (message) {
      text.textContent = message;
      text.hidden = false;
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", "filter-error filter-help");
    } else {
      text.textContent = "";
      text.hidden = true;
      field.removeAttribute("aria-invalid");
      field.setAttribute("aria-describedby", "filter-help");
    }
  }

  async function saveGallery(title, results, model, queryText, button) {
    if (!results || !results.length) {
      showError("There are no results to save yet.");
      return;
    }
    const body = {title, query: queryText || title, model,
                  results: results.map((r) => (r.photo ? {id: r.id, score: r.score, photo: r.photo} : {id: r.id, score: r.score}))};
    if (button) button.disabled = true;
    busy(true);
    try {
      const response = await api("/api/gallery", {method: "POST", headers: {"Content-Type": "application/json"},
                                                   body: JSON.stringify(body)});
      const blob = await response.blob();
      const name = filenameFrom(response.headers.get("Content-Disposition")) || "gallery.html";
      const href = URL.createObjectURL(blob);
      const a = h("a", {href, download: name, hidden: true});
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 60000);
      announce(`Saved the gallery as ${name}.`);
    } catch (e) {
      showError(e.message);
    } finally {
      busy(false);
      if (button) button.disabled = false;
    }
  }

  // --- showing things --------------------------------------------------------------------------

  // While a search runs the results shown are old: dimmed, and not clickable. After a failed one they
  // stay so (they are not what was asked for) until the error is dismissed or a view is shown.
  function busy(on, {failed = false} = {}) {
    $("busy").hidden = !on;
    $("main").setAttribute("aria-busy", on ? "true" : "false");
    if (on) announce("Searching…");
    stale(on || failed);
  }

  function stale(on) {
    on = on && current() != null && current().kind !== "home";
    const body = $("view-body");
    body.classList.toggle("stale", on);
    body.toggleAttribute("inert", on);  // not clickable, not focusable, hidden from screen readers
  }

  function announce(text) {
    $("status").textContent = text;
  }

  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
    if ($("busy").hidden && !$("filters").hasAttribute("aria-invalid")) stale(false);
  }

  function focusHeading() {
    const heading = document.querySelector("#view-head h1");
    if (heading) heading.focus({preventScroll: false});
  }

  function restoreFocus(view) {
    const card = view.lastFocus &&
      Array.from(document.querySelectorAll("#view-body .card")).find((c) => c.dataset.id === view.lastFocus);
    if (card) card.focus();
    else focusHeading();
  }

  function photo(src, alt, cls, ...extra) {
    const img = h("img", {src, alt: alt || "", loading: "lazy", decoding: "async", class: cls});
    img.addEventListener("error", () => img.closest(".photo")?.classList.add("broken"), {once: true});
    return h("span", {class: "photo"}, img, extra);
  }

  // "8 photos": how many photos a product of a catalog of products has (null elsewhere)
  const photoCount = (n) => (typeof n === "number" ? `${n.toLocaleString()} photo${n === 1 ? "" : "s"}` : null);

  // every photo of a product, small, under its name: one clicked is shown large in the view's head
  function photoStrip(item, name) {
    const ids = item.photo_ids || [];
    if (ids.length < 2) return null;
    const show = (pid, button) => {
      const big = document.querySelector("#view-head .query-photo img");
      if (big) big.src = "/thumb/" + encodeId(pid);
      for (const b of button.parentElement.children) b.setAttribute("aria-pressed", b === button ? "true" : "false");
    };
    return h("div", {class: "photo-strip", role: "group", "aria-label": `All ${ids.length} photos of ${name}`},
      ids.map((pid, i) => h("button", {type: "button", class: "strip-photo", "aria-pressed": i === 0 ? "true" : "false",
                                       "aria-label": `Photo ${i + 1} of ${ids.length}`, "data-photo": pid,
                                       onclick: (e) => show(pid, e.currentTarget)},
        h("img", {src: "/thumb/" + encodeId(pid), alt: "", loading: "lazy"}))));
  }

  function card(result, {shared = false, scoreOf = null} = {}) {
    const meta = result.metadata || {};
    const price = priceOf(meta);
    const facts = factsOf(meta);
    const p = fmtProbability(result.probability);
    const name = result.title || result.id;
    const count = photoCount(result.photos);
    const shownPhoto = result.photo ? `\nphoto shown: ${result.photo} (the best match)` : "";
    return h("button", {type: "button", class: "card" + (shared ? " shared" : ""),
                        dataset: {id: result.id, photo: result.photo || null,  // prob: for the relevance floor (results.js)
                                  prob: typeof result.probability === "number" ? String(result.probability) : null},
                        title: `${name}\n${result.id}${count ? " · " + count : ""}${shownPhoto}\nClick for similar items`,
                        onclick: () => showSimilar(result)},
      // alt "": the card's title (just below) names it; an alt would make its name say the title twice
      photo(result.thumb, "", null, count ? h("span", {class: "count"}, count) : null),
      shared ? h("span", {class: "badge"}, "in both") : null,
      !shared && result.found_by ? window.vrecModes.badge(result.found_by) : null,  // which leg found it (modes.js)
      h("span", {class: "card-body"},
        h("span", {class: "title"}, name),
        facts.length ? h("span", {class: "facts"}, facts.join(" · ")) : null,
        h("span", {class: "numbers"},
          price != null ? h("span", {class: "price"}, price) : null,
          h("span", {class: "score", title: scoreOf ? `${scoreOf}'s own similarity: not comparable with the other model's scores`
                                                    : result.found_by ? "Keyword or hybrid score: higher ranks first (not a cosine)"
                                                    : "Cosine similarity to the query"},
            h("span", {class: "k"}, "score "), fmtScore(result.score)),
          p ? h("span", {class: "prob", title: "Match probability: SigLIP's estimate that the text describes the photo"},
                h("span", {class: "k"}, "match "), p) : null),
        h("span", {class: "rank", "aria-hidden": "true"}, "#" + result.rank)));
  }

  function grid(results, {shared = new Set(), compact = false, scoreOf = null} = {}) {
    if (!results.length) {
      return h("p", {class: "empty"}, "No items match. Loosen the filters, or try other words.");
    }
    const tools = window.vrecPanel?.cardTools;  // panel.js: a card's "Details" and "+ Collection" buttons
    return h("div", {class: "grid" + (compact ? " compact" : "")},
      results.map((r) => { const c = card(r, {shared: shared.has(r.id), scoreOf}); return tools ? tools(c, r) : c; }));
  }

  function notes(list) {
    return (list || []).length ? h("ul", {class: "notes"}, list.map((n) => h("li", {}, n))) : null;
  }

  function meta(data, extra) {
    const parts = [`${data.results.length} result${data.results.length === 1 ? "" : "s"}`, data.model];
    if (typeof data.took_ms === "number") parts.push(`${Math.round(data.took_ms)} ms`);
    if (extra) parts.push(extra);
    return h("p", {class: "meta"}, parts.join(" · "));
  }

  function backButton() {
    return state.at > 0
      ? h("button", {type: "button", class: "back", onclick: back, title: "Back (Esc)"}, "← Back")
      : null;
  }

  function saveButton(label, title, results, model, queryText) {
    const button = h("button", {type: "button", class: "save", title: "Download these results as one self-contained HTML page"},
                     label);
    button.addEventListener("click", () => saveGallery(title, results, model, queryText, button));
    return button;
  }

  // "60 items", or for a catalog of products "81 products (648 photos)"
  function itemsOf(hl) {
    const n = hl.items.toLocaleString();
    if (hl.photos == null) return `${n} item${hl.items === 1 ? "" : "s"}`;
    return `${n} product${hl.items === 1 ? "" : "s"} (${photoCount(hl.photos)})`;
  }

  function modelKind(name) {
    const m = (state.health?.models || []).find((x) => x.name === name);
    return m ? (m.text ? "vision-language" : "image only") : "";
  }

  // --- facets: what the results hold, to narrow them by ----------------------------------------

  function facetsPanel(f, filters) {
    if (!f) return null;
    const groups = [];
    for (const c of f.categorical || []) {
      if (!c.values.length) continue;
      groups.push(h("section", {class: "facet", dataset: {column: c.column}},
        h("h3", {}, c.column),
        h("ul", {}, c.values.map((v) => h("li", {},
          h("button", {type: "button", class: "facet-value" + (v.selected ? " selected" : ""), "aria-pressed": v.selected ? "true" : "false",
                       disabled: !v.filter, dataset: {filter: v.filter || ""},
                       title: v.selected ? `Remove the filter ${v.filter}` : `Only ${c.column} ${v.value}: add the filter ${v.filter}`,
                       onclick: () => applyFilters(v.selected ? withoutValue(filters, c.column, v.value, v.filter)
                                                              : [...filters, v.filter])},
            h("span", {class: "value"}, String(v.value)), h("span", {class: "n"}, v.count.toLocaleString()))))),
        c.other ? h("p", {class: "more"}, `+ ${c.other.toLocaleString()} in other values`) : null));
    }
    for (const c of f.numeric || []) {
      if (c.min == null) continue;
      const chosen = c.selected_min != null || c.selected_max != null;
      const range = !chosen ? null : c.selected_min != null && c.selected_max != null
        ? `${fmtNumber(c.selected_min)} – ${fmtNumber(c.selected_max)}`
        : c.selected_max != null ? `up to ${fmtNumber(c.selected_max)}` : `from ${fmtNumber(c.selected_min)}`;
      const buckets = c.buckets.filter((b) => b.count > 0 && b.filters.length);
      groups.push(h("section", {class: "facet numeric", dataset: {column: c.column}},
        h("h3", {}, c.column, h("span", {class: "muted"}, ` ${fmtNumber(c.min)} – ${fmtNumber(c.max)}`)),
        h("ul", {},
          chosen ? h("li", {}, h("button", {type: "button", class: "facet-value selected range", "aria-pressed": "true",
                                           title: `Remove the ${c.column} range`,
                                           onclick: () => applyFilters(withoutRange(filters, c.column))},
            h("span", {class: "value"}, range), h("span", {class: "n", "aria-label": "remove"}, "×"))) : null,
          buckets.length > 1 || !chosen ? buckets.map((b) => h("li", {},
            h("button", {type: "button", class: "facet-value bucket", "aria-pressed": "false", dataset: {filter: b.filters.join(", ")},
                         title: `Only ${c.column} ${b.filters.join(" and ")}`,
                         onclick: () => applyFilters([...withoutRange(filters, c.column), ...b.filters])},
              h("span", {class: "value"}, `${fmtNumber(b.min)} – ${fmtNumber(b.max)}`),
              h("span", {class: "n"}, b.count.toLocaleString())))) : null)));
    }
    if (!groups.length) return null;
    const panel = h("details", {class: "facets", id: "facets", open: !matchMedia("(max-width: 760px)").matches},
      h("summary", {}, "Narrow by", h("span", {class: "muted"}, ` · ${f.items.toLocaleString()} shown`)),
      groups,
      filters.length ? h("button", {type: "button", class: "link clear", onclick: () => applyFilters([])}, "Clear all filters") : null);
    return panel;
  }

  // the results, with their facets beside them
  function withFacets(view, ...content) {
    const panel = facetsPanel(view.facets, view.opts.filters);
    return panel ? h("div", {class: "with-facets"}, panel, h("div", {class: "results"}, content)) : content;
  }

  // "62% of tiny-siglip's neighbours share its category (bags), 25% of tiny-cnn's."
  function agreementText(c) {
    if (!c.label) return null;
    if (c.label_value == null) return `This item has no ${c.label}: nothing to agree on.`;
    const r = c.right.agreement, l = c.left.agreement;
    if (r == null && l == null) return `No other item shares its ${c.label} (${c.label_value}).`;
    return `${fmtPct(r)} of ${c.right.model}'s neighbours share its ${c.label} (${c.label_value}), ` +
           `${fmtPct(l)} of ${c.left.model}'s.`;
  }

  function summaryBox(c) {
    const s = c.summary;
    if (!s) return null;
    const of = `${s.items.toLocaleString()} item${s.items === 1 ? "" : "s"}${s.sampled ? " (a sample)" : ""}`;
    return h("section", {class: "summary", "aria-label": "Catalog-wide figures"},
      h("h2", {}, "Across the catalog", c.filters.length ? h("span", {class: "muted"}, " · " + c.filters.join(", ")) : null),
      h("p", {}, `Over ${of}, the two models share ${fmtPct(s.mean_overlap)} of their ${s.k} neighbours on average.`),
      s.label && s.right_agreement != null
        ? h("p", {}, `On average ${fmtPct(s.right_agreement)} of ${c.right.model}'s neighbours share the item's ${s.label}, ` +
                     `${fmtPct(s.left_agreement)} of ${c.left.model}'s (${s.labelled.toLocaleString()} items with a ${s.label}).`)
        : null,
      s.per_label && s.per_label.length ? h("table", {},
        h("thead", {}, h("tr", {}, h("th", {scope: "col"}, s.label), h("th", {scope: "col"}, "items"),
          h("th", {scope: "col"}, c.right.model), h("th", {scope: "col"}, c.left.model))),
        h("tbody", {}, s.per_label.map((row) => h("tr", {},
          h("th", {scope: "row"}, String(row.value)), h("td", {}, row.items.toLocaleString()),
          h("td", {}, fmtPct(row.right)), h("td", {}, fmtPct(row.left)))))) : null);
  }

  function render(view) {
    setOptions(view.opts);
    if (view.kind !== "home") markFilters(null);  // home is also what a first search that failed leaves
    stale(false);
    const head = $("view-head"), body = $("view-body");
    head.replaceChildren();
    body.replaceChildren();
    head.className = "view-head " + view.kind;
    let title = "vrec";

    if (view.kind === "home") {
      const hl = state.health;
      put(head, h("h1", {tabindex: "-1"}, "Find products by words or by photo"));
      put(body, h("div", {class: "welcome"},
        h("p", {}, `Search ${itemsOf(hl)} with ${hl.default_model}. Type a description and press Enter, ` +
                   "or drop a photo anywhere on this page."),
        h("ul", {},
          h("li", {}, "Click a result (or Tab to it and press Enter) to see its similar items."),
          hl.photos != null ? h("li", {}, "Each result is a product, shown with its photo that matches best.") : null,
          hl.compare_with ? h("li", {}, `On an item, “Side by side” shows ${hl.compare_with}'s neighbours next to ` +
                                        `${hl.default_model}'s.`) : null,
          state.columns.length ? h("li", {}, "Filters narrow every search: ",
            state.columns.slice(0, 3).map((c, i) => [i ? ", " : "", h("code", {}, `${c}=…`)]), ".") : null,
          h("li", {}, "Esc goes back; “Save as gallery” downloads the results as one HTML page to send around."))));
      announce("");
    } else if (view.kind === "text") {
      const d = view.data;
      title = `“${view.q}”`;
      put(head, backButton(),
        h("div", {class: "head-main"}, h("h1", {tabindex: "-1"}, title), meta(d, view.opts.filters.join(", "))),
        h("div", {class: "actions"}, saveButton("Save as gallery", view.q, d.results, d.model, view.q)));
      put(body, notes(d.notes), withFacets(view, grid(d.results)));
      announce(`${d.results.length} results for ${view.q}.`);
    } else if (view.kind === "image") {
      const d = view.data;
      title = `Like ${view.fileName}`;
      const steer = h("form", {class: "steer", "aria-label": "Steer the photo search with text"},
        h("label", {}, h("span", {class: "sign plus", "aria-hidden": "true"}, "+"), " text",
          h("input", {name: "plus", type: "text", value: view.plus || "", placeholder: "more of, e.g. leather",
                      "aria-label": "Plus text: more of this"})),
        h("label", {}, h("span", {class: "sign minus", "aria-hidden": "true"}, "−"), " text",
          h("input", {name: "minus", type: "text", value: view.minus || "", placeholder: "less of, e.g. red",
                      "aria-label": "Minus text: less of this"})),
        h("label", {}, "weight",
          h("input", {name: "weight", type: "number", min: "0", max: "10", step: "0.1", value: String(view.weight ?? 1)})),
        h("button", {type: "submit"}, "Update"));
      steer.addEventListener("submit", (e) => {
        e.preventDefault();
        const f = new FormData(steer);
        searchPhoto(view.file, {plus: String(f.get("plus") || "").trim(), minus: String(f.get("minus") || "").trim(),
                                weight: Number(f.get("weight") || 1)});
      });
      const steered = [view.plus && `+ ${view.plus}`, view.minus && `− ${view.minus}`].filter(Boolean).join(" ");
      put(head, backButton(),
        h("span", {class: "query-photo photo"}, h("img", {src: view.preview, alt: "Your photo"})),
        h("div", {class: "head-main"}, h("h1", {tabindex: "-1"}, title, steered ? h("span", {class: "steered"}, " " + steered) : null),
          meta(d, view.opts.filters.join(", ")), steer),
        h("div", {class: "actions"}, saveButton("Save as gallery", `Like ${view.fileName}${steered ? " " + steered : ""}`,
                                                d.results, d.model, view.fileName)));
      put(body, notes(d.notes), withFacets(view, grid(d.results)));
      announce(`${d.results.length} results like your photo.`);
    } else if (view.kind === "similar") {
      const item = view.item || {id: view.id, thumb: "/thumb/" + encodeId(view.id)};
      const name = item.title || item.id;
      const price = priceOf(item.metadata);
      title = `Similar to ${name}`;
      const hl = state.health;
      const toggle = hl.compare_with
        ? h("button", {type: "button", id: "compare-toggle", class: "toggle", "aria-pressed": view.compare ? "true" : "false",
                       onclick: toggleCompare, title: "Show both models' neighbours side by side"},
            h("span", {class: "switch", "aria-hidden": "true"}), `Side by side: ${hl.compare_with} vs ${hl.default_model}`)
        : null;
      const facts = [item.id, photoCount(item.photos), price, ...factsOf(item.metadata)].filter(Boolean).join(" · ");
      if (view.compare) {
        const c = view.cmp;
        const shared = new Set(c.shared);
        const pct = Math.round(c.overlap * 100);
        const labels = state.labels || [];
        const chooser = labels.length ? h("label", {class: "label-chooser"}, "Agreement on",
          h("select", {id: "label-column", name: "label", onchange: (e) => recompare({label: e.target.value})},
            labels.map((col) => h("option", {value: col, selected: col === c.label}, col)))) : null;
        const summaryButton = h("button", {type: "button", id: "summary-button", disabled: !!c.summary,
                                           title: "Mean overlap and agreement over every item of the catalog (matching the filters)",
                                           onclick: () => recompare({withSummary: true})},
          c.summary ? "Catalog-wide figures shown" : "Catalog-wide figures");
        const agreement = agreementText(c);
        put(head, backButton(), h("span", {class: "query-photo photo"}, h("img", {src: item.thumb, alt: name})),
          h("div", {class: "head-main"}, h("h1", {tabindex: "-1"}, title), h("p", {class: "meta"}, facts),
            h("p", {class: "meta"}, `${c.shared.length} of ${c.k} neighbours in both lists (overlap ${pct}%); `,
              h("span", {class: "shared-key"}, "framed"), " = found by both models.",
              c.filters.length ? ` Among items with ${c.filters.join(", ")}.` : null),
            h("div", {class: "agree-row"}, chooser, summaryButton),
            agreement ? h("p", {class: "agreement", id: "agreement"}, agreement) : null,
            h("p", {class: "meta scores-note"}, "Scores are not comparable between the two models: each is on its own "
              + "model's scale. Compare the ranks, and what both found.")),
          h("div", {class: "actions"}, toggle));
        const column = (side) => {
          const s = c[side];
          return h("section", {class: "column", "aria-label": `${s.model} neighbours`},
            h("div", {class: "column-head"},
              h("div", {}, h("h2", {}, s.model, h("span", {class: "muted"}, " " + modelKind(s.model))),
                h("span", {class: "scale"}, `scores on ${s.model}'s own scale`)),
              typeof s.agreement === "number"
                ? h("span", {class: "share", title: `Share of ${s.model}'s neighbours with this item's ${c.label}`},
                    `${fmtPct(s.agreement)} same ${c.label}`) : null,
              saveButton("Save", `Similar to ${name} (${s.model})`, s.results, s.model, name)),
            grid(s.results, {shared, compact: true, scoreOf: s.model}));
        };
        put(body, notes(c.notes), summaryBox(c), h("div", {class: "compare"}, column("left"), column("right")));
        announce(`${c.left.model} and ${c.right.model}: ${c.shared.length} of ${c.k} neighbours in common.`);
      } else {
        const d = view.data;
        put(head, backButton(), h("span", {class: "query-photo photo"}, h("img", {src: item.thumb, alt: name})),
          h("div", {class: "head-main"}, h("h1", {tabindex: "-1"}, title), h("p", {class: "meta"}, facts),
            photoStrip(item, name), meta(d, view.opts.filters.join(", "))),
          h("div", {class: "actions"}, toggle, saveButton("Save as gallery", `Similar to ${name}`, d.results, d.model, name)));
        put(body, notes(d.notes), withFacets(view, grid(d.results)));
        announce(`${d.results.length} items similar to ${name}.`);
      }
    }
    document.title = title === "vrec" ? "vrec" : `${title} — vrec`;
    // collections.js adds its buttons to the view's head (Save as collection, Add to collection)
    document.dispatchEvent(new CustomEvent("vrec:render", {detail: {view, health: state.health}}));
  }

  // --- photos: choose, drop, paste -------------------------------------------------------------

  function wirePhotos() {
    const input = $("photo-input");
    $("photo-button").addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      if (input.files && input.files[0]) searchPhoto(input.files[0]);
      input.value = "";
    });

    const overlay = $("drop-overlay");
    let depth = 0;
    const hasFiles = (e) => Array.from(e.dataTransfer?.types || []).includes("Files");
    window.addEventListener("dragenter", (e) => {
      if (!hasFiles(e)) return;
      depth++;
      overlay.hidden = false;
    });
    window.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) overlay.hidden = true;
    });
    window.addEventListener("dragover", (e) => {
      if (hasFiles(e)) e.preventDefault();
    });
    window.addEventListener("drop", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      overlay.hidden = true;
      const file = e.dataTransfer.files[0];
      if (file) searchPhoto(file);
    });
    window.addEventListener("paste", (e) => {
      const file = Array.from(e.clipboardData?.files || []).find((f) => f.type.startsWith("image/"));
      if (file) { e.preventDefault(); searchPhoto(file); }
    });
  }

  // --- start -----------------------------------------------------------------------------------

  async function start() {
    $("search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      searchText();
    });
    $("filters").addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); rerun(); }
    });
    $("k").addEventListener("change", rerun);
    $("model").addEventListener("change", rerun);
    $("mode").addEventListener("change", () => { if (["text", "home"].includes(current()?.kind || "home")) rerun(); });
    $("error-close").addEventListener("click", hideError);
    document.addEventListener("keydown", (e) => {
      if (e.key !== "Escape" || e.defaultPrevented) return;
      if (!$("drop-overlay").hidden) { $("drop-overlay").hidden = true; return; }
      const t = e.target;  // Esc in a text box is the box's (clearing, closing a list), never "go back"
      if (t instanceof Element && (t.isContentEditable || t.matches("input, textarea, select"))) return;
      if (state.at > 0) { e.preventDefault(); back(); }
      else if (!$("error").hidden) hideError();
    });
    wirePhotos();

    try {
      state.health = await getJSON("/api/health");
    } catch (e) {
      showError(e.message);
      return;
    }
    const hl = state.health;
    $("store-info").textContent = `${itemsOf(hl)} · ${hl.default_model}` +
      (hl.compare_with ? ` · vs ${hl.compare_with}` : "");
    $("model").replaceChildren(...hl.models.map((m) =>
      h("option", {value: m.name, selected: m.name === hl.default_model},
        `${m.name}${m.text ? "" : " (photos only)"}`)));
    // the merchandising columns first (category, colour, price...); ids, sizes and long texts after them
    const technical = (c) => ["id", "width", "height", "photos", "skus"].includes(c.toLowerCase()) ||
      c.toLowerCase().startsWith("description");
    const all = (hl.filters || []).filter((c) => !["file", "path", "title"].includes(c.toLowerCase()));
    state.columns = [...all.filter((c) => !technical(c)), ...all.filter(technical)];
    if (state.columns.length) {
      const business = all.filter((c) => !technical(c));
      $("filters").placeholder = "e.g. " + (business.length ? business : state.columns).slice(0, 2).map((c) => c + "=…").join(", ");
      $("filter-help").textContent = `Filter on ${business.length ? business.join(", ") : state.columns.join(", ")}` +
        (business.length && business.length < all.length ? ` (also ${all.filter(technical).join(", ")})` : "") +
        "; separate filters with commas; = != < <= > >= and “in (a,b)” work. Enter applies them.";
    } else {
      $("filters").disabled = true;
      $("filters").placeholder = "this catalog has no metadata to filter on";
    }
    document.dispatchEvent(new CustomEvent("vrec:health", {detail: hl}));  // modes.js sets up the text mode chooser
    await route({replace: false});
    document.documentElement.dataset.ready = "1";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
