// vrec serve: curated collections on the page. Plain JavaScript, no build step, no external assets.
// Talks to /api/collections (docs/collections.md). Lives beside app.js: app.js announces each view it
// renders with a "vrec:render" event, and this file adds its buttons to that view's head ("Save as
// collection", "Add to collection"); the Collections view itself is its own section (#coll-view),
// shown instead of the search views while open. Catalog text goes in with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const h = window.vrecDom.h;  // app.js's element builder (loaded first)

  // replace an element's children, leaving out the missing ones (null, false), which replaceChildren would write
  const fill = (el, ...children) => el.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));

  const encodeId = (id) => String(id).split("/").map(encodeURIComponent).join("/");
  const path = (name) => "/api/collections/" + encodeURIComponent(name);
  const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
  const when = (iso) => {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "short"});
  };

  // --- the API ----------------------------------------------------------------------------------

  const call = window.vrecDom.call;  // app.js's: the answer's JSON, or an Error with the server's message and .status

  const send = (method, url, body) =>
    call(url, {method, headers: {"Content-Type": "application/json"}, body: body == null ? undefined : JSON.stringify(body)});

  // --- state ------------------------------------------------------------------------------------

  const S = {
    health: null,
    view: null,        // the search view app.js shows (its detail.view)
    screen: "list",    // what #coll-view shows: "list" or "one"
    coll: null,        // the collection as loaded or saved (its version is what a save starts from)
    items: [],         // the items as edited, in order: {id, pinned, note, title, thumb, available}
    removed: [],       // ids taken out (saved ones and those removed since)
    dirty: false,
    fresh: new Set(),  // ids a refresh just brought in
  };

  function announce(text) {
    const status = $("status");
    if (status) status.textContent = text;
  }

  function showGlobalError(message) {
    const box = $("error"), text = $("error-text");
    if (!box || !text) return;
    text.textContent = message;
    box.hidden = false;
  }

  // --- showing and hiding the Collections view --------------------------------------------------

  const isOpen = () => document.body.classList.contains("coll-open");

  function openView() {
    document.body.classList.add("coll-open");
    $("coll-view").hidden = false;
    $("collections-button").setAttribute("aria-expanded", "true");
    document.title = (S.screen === "one" && S.coll ? S.coll.name + " — " : "") + "Collections — vrec";
  }

  function closeView({focus = true} = {}) {
    if (!isOpen()) return;
    document.body.classList.remove("coll-open");
    $("coll-view").hidden = true;
    $("collections-button").setAttribute("aria-expanded", "false");
    const heading = document.querySelector("#view-head h1");
    if (heading) {
      document.title = heading.textContent === "vrec" ? "vrec" : `${heading.textContent} — vrec`;
      if (focus) heading.focus();
    }
  }

  function focusHeading() {
    const heading = document.querySelector("#coll-view h1");
    if (heading) heading.focus();
  }

  // --- the list of collections ------------------------------------------------------------------

  function describeQuery(q) {
    if (!q) return "";
    const what = q.kind === "text" ? `“${q.text}”` : q.kind === "item" ? `similar to ${q.item}` : `like ${q.image}`;
    const filters = (q.filters || []).length ? ` · ${q.filters.join(", ")}` : "";
    return `${what} · ${q.model} · top ${q.k}${filters}`;
  }

  async function showList({focus = true} = {}) {
    S.screen = "list";
    const view = $("coll-view");
    let answer;
    try {
      answer = await call("/api/collections");
    } catch (e) {
      showGlobalError(e.message);
      return;
    }
    const list = answer.collections || [];
    const form = h("form", {class: "coll-new", "aria-label": "New collection from a text"},
      h("label", {}, "Name", h("input", {type: "text", name: "name", required: true, maxlength: "80",
                                          placeholder: "e.g. minimalist jewellery"})),
      h("label", {}, "Text", h("input", {type: "text", name: "text", required: true, maxlength: "1000",
                                          value: S.view && S.view.kind === "text" ? S.view.q : "",
                                          placeholder: "e.g. minimalist silver jewellery"})),
      h("label", {}, "Items", h("input", {type: "number", name: "k", min: "1", max: "1000", value: "24"})),
      h("button", {type: "submit", class: "primary"}, "Create"));
    const formError = h("p", {class: "coll-form-error", role: "alert"});
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const f = new FormData(form);
      create({name: String(f.get("name") || "").trim(), text: String(f.get("text") || "").trim(),
              k: Number(f.get("k")) || 24, model: S.view?.opts?.model || null}, formError);
    });
    const rows = list.map((c) => h("li", {class: "coll-row"},
      h("button", {type: "button", class: "coll-open-button", onclick: () => showOne(c.name),
                   "aria-label": `Open the collection ${c.name}`}, c.name),
      h("span", {class: "coll-row-facts"},
        `${plural(c.items, "item")} · ${c.pinned} pinned · ${describeQuery(c.query)}`),
      h("span", {class: "coll-row-saved"}, `saved ${when(c.updated)} by ${c.by} · version ${c.version}`)));
    fill(view,
      h("div", {class: "view-head coll-head"},
        h("button", {type: "button", class: "back", onclick: closeView}, "← Back to search"),
        h("div", {class: "head-main"},
          h("h1", {tabindex: "-1"}, "Collections"),
          h("p", {class: "meta"}, list.length ? `${plural(list.length, "collection")} in this store`
            : "No collections yet: make one from a search (“Save as collection”) or below."))),
      S.coll && S.dirty ? h("p", {class: "coll-msg"}, `“${S.coll.name}” has unsaved changes. `,
        h("button", {type: "button", class: "link", onclick: () => renderOne()}, "Go back to it")) : null,
      list.length ? h("ul", {class: "coll-list"}, rows) : null,
      h("section", {class: "coll-new-box", "aria-labelledby": "coll-new-title"},
        h("h2", {id: "coll-new-title"}, "New collection from a text"), form, formError));
    openView();
    announce(list.length ? `${plural(list.length, "collection")}.` : "No collections yet.");
    if (focus) focusHeading();
  }

  async function create(body, errorBox, dialog) {
    if (!body.name) { errorBox.textContent = "Give the collection a name."; return; }
    try {
      const c = await send("POST", "/api/collections", body);
      if (dialog) dialog.close();
      S.fresh = new Set();
      loaded(c);
      renderOne();
      announce(`Created the collection ${c.name} with ${plural(c.items.length, "item")}.`);
    } catch (e) {
      errorBox.textContent = e.message;
    }
  }

  // --- one collection ---------------------------------------------------------------------------

  function loaded(c) {
    S.coll = c;
    S.items = c.items.map((i) => ({...i}));
    S.removed = [...c.removed];
    S.dirty = false;
    S.screen = "one";
  }

  async function showOne(name) {
    if (S.dirty && S.coll && S.coll.name !== name &&
        !window.confirm(`Leave “${S.coll.name}” without saving its changes?`)) return;
    try {
      S.fresh = new Set();
      loaded(await call(path(name)));
    } catch (e) {
      showGlobalError(e.message);
      return;
    }
    renderOne();
  }

  function markDirty() {
    S.dirty = true;
    const flag = document.querySelector("#coll-view .coll-dirty");
    if (flag) flag.hidden = false;
  }

  function itemName(item) { return item.title || item.id; }

  function itemCard(item, index) {
    const name = itemName(item);
    const last = S.items.length - 1;
    const button = (act, label, aria, extra) =>
      h("button", {type: "button", class: "coll-act " + act, dataset: {act, id: item.id}, "aria-label": aria, ...extra},
        label);
    const note = h("textarea", {rows: "2", maxlength: "2000", class: "coll-note", id: `coll-note-${index}`,
                                dataset: {id: item.id}, placeholder: "Add a note"});
    note.value = item.note || "";
    note.addEventListener("input", () => { item.note = note.value; markDirty(); });
    return h("li", {class: "coll-item" + (item.pinned ? " pinned" : "") + (S.fresh.has(item.id) ? " fresh" : ""),
                    dataset: {id: item.id}},
      h("span", {class: "coll-photo"}, h("img", {src: item.thumb, alt: name, loading: "lazy", decoding: "async"})),
      h("div", {class: "coll-info"},
        h("span", {class: "coll-rank"}, `#${index + 1}`),
        item.pinned ? h("span", {class: "coll-badge pin"}, "Pinned") : null,
        S.fresh.has(item.id) ? h("span", {class: "coll-badge new"}, "New") : null,
        item.available === false ? h("span", {class: "coll-badge gone"}, "Not in the store") : null,
        h("span", {class: "coll-title"}, name),
        h("span", {class: "coll-id"}, item.id)),
      h("label", {class: "coll-note-label", for: `coll-note-${index}`}, h("span", {class: "sr-only"}, `Note for ${name}`),
        note),
      h("div", {class: "coll-acts", role: "group", "aria-label": `Edit ${name}`},
        button("pin", item.pinned ? "Unpin" : "Pin", `${item.pinned ? "Unpin" : "Pin"} ${name}`,
               {"aria-pressed": item.pinned ? "true" : "false"}),
        button("up", "↑", `Move ${name} up`, {"aria-disabled": index === 0 ? "true" : null, title: "Move up"}),
        button("down", "↓", `Move ${name} down`, {"aria-disabled": index === last ? "true" : null, title: "Move down"}),
        button("remove", "Remove", `Remove ${name}`)));
  }

  function removedList() {
    const taken = S.removed.filter((id) => !S.coll.removed.includes(id));
    if (!taken.length) return null;
    return h("section", {class: "coll-removed", "aria-labelledby": "coll-removed-title"},
      h("h2", {id: "coll-removed-title"}, `Removed since the last save (${taken.length})`),
      h("ul", {}, taken.map((id) => h("li", {},
        h("span", {}, id), " ",
        h("button", {type: "button", class: "link coll-putback", dataset: {id},
                     onclick: () => putBack(id), "aria-label": `Put ${id} back`}, "Put back")))));
  }

  function exportLink(format, label) {
    return h("a", {class: "coll-export button-like", href: `${path(S.coll.name)}/export?format=${format}`,
                   download: "", "aria-label": `Export as ${label}`}, label);
  }

  function renderOne({focus = "heading"} = {}) {
    S.screen = "one";
    const c = S.coll;
    const pinned = S.items.filter((i) => i.pinned).length;
    const view = $("coll-view");
    fill(view,
      h("div", {class: "view-head coll-head"},
        h("button", {type: "button", class: "back", onclick: () => showList()}, "← All collections"),
        h("div", {class: "head-main"},
          h("h1", {tabindex: "-1"}, c.name),
          h("p", {class: "meta"}, `${plural(S.items.length, "item")} · ${pinned} pinned · ${describeQuery(c.query)}`),
          h("p", {class: "meta"}, `Saved ${when(c.updated)} by ${c.by} · version ${c.version} `,
            h("span", {class: "coll-dirty", hidden: !S.dirty}, "· Unsaved changes"))),
        h("div", {class: "actions"},
          h("button", {type: "button", class: "primary", id: "coll-save", onclick: save}, "Save"),
          h("button", {type: "button", id: "coll-refresh", onclick: refresh,
                       title: "Run the query again: new matches are added, removed items stay out"}, "Refresh"),
          h("span", {class: "coll-exports", role: "group", "aria-label": "Export"},
            exportLink("html", "HTML"), exportLink("csv", "CSV"), exportLink("json", "JSON")),
          h("button", {type: "button", id: "coll-delete", class: "danger", onclick: remove}, "Delete"))),
      h("div", {id: "coll-conflict", class: "error", role: "alert", hidden: true},
        h("span", {id: "coll-conflict-text"}),
        h("button", {type: "button", id: "coll-reload", onclick: reload}, "Reload")),
      h("div", {id: "coll-msg", class: "coll-msg", role: "status", hidden: true}),
      S.items.length ? h("ol", {class: "coll-items", "aria-label": `Items of ${c.name}, in order`},
        S.items.map(itemCard)) : h("p", {class: "empty"}, "This collection holds no items."),
      removedList());
    openView();
    if (focus === "heading") focusHeading();
  }

  // keep the keyboard where it was: the same action of the same item after a re-render
  function refocus(id, act) {
    const sel = `#coll-view .coll-act[data-act="${act}"][data-id="${CSS.escape(id)}"]`;
    const el = document.querySelector(sel) || document.querySelector("#coll-view h1");
    if (el) el.focus();
  }

  function onAct(event) {
    const btn = event.target.closest(".coll-act");
    if (!btn || !$("coll-view").contains(btn)) return;
    const id = btn.dataset.id, act = btn.dataset.act;
    const at = S.items.findIndex((i) => i.id === id);
    if (at < 0) return;
    const item = S.items[at];
    const name = itemName(item);
    if (act === "pin") {
      item.pinned = !item.pinned;
      announce(`${item.pinned ? "Pinned" : "Unpinned"} ${name}.`);
    } else if (act === "up" || act === "down") {
      const to = act === "up" ? at - 1 : at + 1;
      if (to < 0 || to >= S.items.length) { announce(`${name} is already ${act === "up" ? "first" : "last"}.`); return; }
      S.items.splice(at, 1);
      S.items.splice(to, 0, item);
      announce(`Moved ${name} to position ${to + 1} of ${S.items.length}.`);
    } else if (act === "remove") {
      S.items.splice(at, 1);
      if (!S.removed.includes(id)) S.removed.push(id);
      announce(`Removed ${name}; “Put back” at the end of the list undoes it.`);
    }
    S.dirty = true;
    renderOne({focus: null});
    if (act === "remove") {
      const next = S.items[Math.min(at, S.items.length - 1)];
      if (next) refocus(next.id, "remove"); else focusHeading();
    } else {
      refocus(id, act);
    }
  }

  function putBack(id) {
    const known = S.coll.items.find((i) => i.id === id);
    S.removed = S.removed.filter((r) => r !== id);
    S.items.push(known ? {...known} : {id, pinned: false, note: "", title: null, thumb: "/thumb/" + encodeId(id), available: true});
    S.dirty = true;
    renderOne({focus: null});
    refocus(id, "remove");
    announce(`Put ${id} back, at the end.`);
  }

  function conflict(message) {
    $("coll-conflict-text").textContent = message + " ";
    $("coll-conflict").hidden = false;
    $("coll-reload").focus();
  }

  function message(text, extra) {
    const box = $("coll-msg");
    box.replaceChildren(text, extra || "");
    box.hidden = false;
  }

  async function save() {
    const c = S.coll;
    const button = $("coll-save");
    button.disabled = true;
    try {
      const saved = await send("PUT", path(c.name), {
        version: c.version,
        items: S.items.map((i) => ({id: i.id, pinned: !!i.pinned, note: i.note || ""})),
        removed: S.removed,
      });
      loaded(saved);
      renderOne({focus: null});
      message(`Saved: version ${saved.version}.`);
      $("coll-save").focus();
      announce(`Saved ${saved.name}, version ${saved.version}.`);
    } catch (e) {
      button.disabled = false;
      if (e.status === 409) conflict(e.message);
      else message(e.message);
    }
  }

  async function reload() {
    if (S.dirty && !window.confirm("Reload the saved collection? Your unsaved changes here are dropped.")) return;
    try {
      S.fresh = new Set();
      loaded(await call(path(S.coll.name)));
    } catch (e) {
      message(e.message);
      return;
    }
    renderOne();
    announce(`Reloaded ${S.coll.name}, version ${S.coll.version}.`);
  }

  async function refresh() {
    if (S.dirty) {
      message("Save your changes (or reload) before refreshing: a refresh saves the collection.");
      return;
    }
    const button = $("coll-refresh");
    button.disabled = true;
    try {
      const r = await send("POST", path(S.coll.name) + "/refresh");
      loaded(r.collection);
      S.fresh = new Set(r.new);
      renderOne({focus: null});
      const titles = S.items.filter((i) => S.fresh.has(i.id)).map(itemName);
      const text = r.new.length ? `Refresh brought in ${plural(r.new.length, "new item")}: ${titles.join(", ")}.`
        : "Refresh found no new items.";
      message(text + (r.gone.length ? ` ${plural(r.gone.length, "item")} left the store: ${r.gone.join(", ")}.` : ""),
              (r.notes || []).length ? " " + r.notes.join(" ") : "");
      $("coll-refresh").focus();
      announce(text);
    } catch (e) {
      button.disabled = false;
      if (e.status === 409) conflict(e.message); else message(e.message);
    }
  }

  async function remove() {
    const name = S.coll.name;
    if (!window.confirm(`Delete the collection “${name}”? This cannot be undone.`)) return;
    try {
      await send("DELETE", path(name));
    } catch (e) {
      message(e.message);
      return;
    }
    S.coll = null; S.items = []; S.removed = []; S.dirty = false;
    await showList();
    announce(`Deleted the collection ${name}.`);
  }

  // --- from a search view: save its results, or add its item to a collection --------------------

  let dialog = null;

  function openDialog(title, fields, onSubmit) {
    if (!dialog) {
      dialog = h("dialog", {id: "coll-dialog", class: "coll-dialog", "aria-labelledby": "coll-dialog-title"});
      // Esc closes the dialog only, not also the search view behind it (app.js goes back on Esc)
      dialog.addEventListener("keydown", (e) => { if (e.key === "Escape") e.stopPropagation(); });
      document.body.append(dialog);
    }
    const errorBox = h("p", {class: "coll-form-error", role: "alert"});
    const form = h("form", {method: "dialog"},
      h("h2", {id: "coll-dialog-title"}, title), fields, errorBox,
      h("div", {class: "coll-dialog-buttons"},
        h("button", {type: "button", onclick: () => dialog.close()}, "Cancel"),
        h("button", {type: "submit", class: "primary"}, "OK")));
    form.addEventListener("submit", (e) => { e.preventDefault(); onSubmit(new FormData(form), errorBox); });
    dialog.replaceChildren(form);
    dialog.showModal();
    const first = dialog.querySelector("input, select");
    if (first) first.focus();
  }

  function saveResultsDialog(view) {
    const fromText = view.kind === "text";
    const what = fromText ? `the results for “${view.q}”` : `the items similar to ${view.item?.title || view.id}`;
    openDialog("Save as collection", [
      h("p", {class: "coll-dialog-what"}, `A collection of ${what}, ` +
        "to pin, reorder, annotate and export."),
      h("label", {}, "Name", h("input", {type: "text", name: "name", required: true, maxlength: "80",
                                          value: fromText ? view.q.slice(0, 80).replace(/[^\w\- ]+/g, " ").trim() : ""})),
      h("label", {}, "Items", h("input", {type: "number", name: "k", min: "1", max: "1000",
                                           value: String(view.opts?.k || 24)}))],
    (f, errorBox) => {
      const body = {name: String(f.get("name") || "").trim(), k: Number(f.get("k")) || 24,
                    model: view.opts?.model || null, filters: view.opts?.filters || []};
      if (fromText) body.text = view.q; else body.item = view.id;
      create(body, errorBox, dialog);
    });
    dialog.querySelector("button[type=submit]").textContent = "Create collection";
  }

  async function addToDialog(view) {
    let list;
    try {
      list = (await call("/api/collections")).collections || [];
    } catch (e) {
      showGlobalError(e.message);
      return;
    }
    const name = view.item?.title || view.id;
    if (!list.length) {
      showGlobalError("There are no collections yet: “Save as collection” makes one.");
      return;
    }
    openDialog(`Add ${name} to a collection`, [
      h("label", {}, "Collection", h("select", {name: "collection"},
        list.map((c) => h("option", {value: c.name}, `${c.name} (${plural(c.items, "item")})`))))],
    async (f, errorBox) => {
      const target = String(f.get("collection"));
      try {
        const c = await call(path(target));
        if (c.items.some((i) => i.id === view.id)) {
          errorBox.textContent = `${name} is in “${target}” already.`;
          return;
        }
        await send("PUT", path(target), {
          version: c.version,
          items: [...c.items.map((i) => ({id: i.id, pinned: i.pinned, note: i.note})), {id: view.id, pinned: false, note: ""}],
          removed: c.removed.filter((r) => r !== view.id)});
        dialog.close();
        announce(`Added ${name} to ${target}.`);
        if (S.coll && S.coll.name === target && !S.dirty) { S.coll = null; }
      } catch (e) {
        errorBox.textContent = e.message;
      }
    });
    dialog.querySelector("button[type=submit]").textContent = "Add";
  }

  function addViewButtons(view) {
    const head = $("view-head");
    if (!head || !view || !["text", "similar"].includes(view.kind)) return;
    let actions = head.querySelector(".actions");
    if (!actions) { actions = h("div", {class: "actions"}); head.append(actions); }
    actions.append(h("button", {type: "button", id: "coll-save-results", class: "save-collection",
                                title: "Keep these results as a collection to curate (pin, reorder, annotate, export)",
                                onclick: () => saveResultsDialog(view)}, "Save as collection…"));
    if (view.kind === "similar") {
      actions.append(h("button", {type: "button", id: "coll-add-item",
                                  title: "Add this item to one of the store's collections",
                                  onclick: () => addToDialog(view)}, "Add to collection…"));
    }
  }

  // --- wiring -----------------------------------------------------------------------------------

  function start() {
    const button = $("collections-button"), view = $("coll-view");
    if (!button || !view) return;
    button.setAttribute("aria-expanded", "false");
    // the list; one with unsaved edits is named at its top, to go back to it
    button.addEventListener("click", () => showList());
    view.addEventListener("click", onAct);
    document.addEventListener("vrec:render", (e) => {
      S.view = e.detail.view;
      S.health = e.detail.health;
      addViewButtons(S.view);
      if (isOpen()) closeView({focus: false});  // a search was made: show it (app.js placed the focus)
    });
    // Esc leaves the Collections view (before app.js would go back a search)
    window.addEventListener("keydown", (e) => {
      if (e.key !== "Escape" || !isOpen() || e.defaultPrevented || (dialog && dialog.open)) return;
      e.preventDefault();
      closeView();
    }, true);
    window.addEventListener("beforeunload", (e) => {
      if (S.dirty) { e.preventDefault(); e.returnValue = ""; }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
