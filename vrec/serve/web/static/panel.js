// vrec serve: an item's panel, and adding items to a collection from their cards. Plain JavaScript, no
// build step. Lives beside app.js: app.js's grid() hands each result card to cardTools() (below), which
// puts a "Details" and an "+ Collection" button under it. The panel is a modal <dialog> (role dialog,
// named by its heading): the item's large photo and all its photos, every metadata field, its similar
// items by each model (both, side by side, when the server compares two), and "add to collection".
// Esc closes it and gives the focus back to what opened it. Catalog text goes in with textContent.
"use strict";

(() => {
  const h = window.vrecDom.h;  // app.js's element builder (loaded first)
  const $ = (id) => document.getElementById(id);

  const encodeId = (id) => String(id).split("/").map(encodeURIComponent).join("/");
  const collPath = (name) => "/api/collections/" + encodeURIComponent(name);
  const fill = (el, ...children) => el.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));
  const SIMILAR = 8;  // similar items per model in the panel
  const CHOSEN_KEY = "vrec.collection";  // the collection "+ Collection" adds to, for this tab

  const P = {health: null, view: null, dialog: null, chooser: null, opener: null, item: null, seq: 0,
             chosen: sessionStorage.getItem(CHOSEN_KEY) || null};

  const call = window.vrecDom.call;  // app.js's: the answer's JSON, or an Error with the server's message and .status

  const send = (method, url, body) =>
    call(url, {method, headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});

  // --- collections: add one item (to an existing collection, or to a new one made for it) -------

  async function addTo(name, id) {
    const c = await call(collPath(name));
    if (c.items.some((i) => i.id === id)) return false;
    await send("PUT", collPath(name), {
      version: c.version,
      items: [...c.items.map((i) => ({id: i.id, pinned: i.pinned, note: i.note})), {id, pinned: false, note: ""}],
      removed: c.removed.filter((r) => r !== id)});
    return true;
  }

  // A new collection holding the item: made from the item (its query: items similar to it, which a
  // refresh brings in), then left with the item alone.
  async function createWith(name, id) {
    const c = await send("POST", "/api/collections", {name, item: id, k: 1, model: P.view?.opts?.model || null});
    await send("PUT", collPath(name), {version: c.version, items: [{id, pinned: false, note: ""}], removed: []});
  }

  function choose(name) {
    P.chosen = name;
    sessionStorage.setItem(CHOSEN_KEY, name);
  }

  // The "add to collection" form: an existing collection, or a new one by name. done(name, added) after.
  async function addForm(item, done) {
    const name = item.title || item.id;
    const message = h("p", {class: "panel-msg", role: "status"});
    const newName = h("input", {type: "text", name: "new", maxlength: "80", placeholder: "e.g. summer picks"});
    const select = h("select", {name: "collection"});
    const newBox = h("label", {class: "panel-new"}, "named ", newName);
    let list = [];
    try {
      list = (await call("/api/collections")).collections || [];
    } catch (e) {
      message.textContent = e.message;
    }
    fill(select, list.map((c) => h("option", {value: c.name, selected: c.name === P.chosen},
                                    `${c.name} (${c.items} item${c.items === 1 ? "" : "s"})`)),
         h("option", {value: "", selected: !list.some((c) => c.name === P.chosen)}, "New collection…"));
    const sync = () => { newBox.hidden = select.value !== ""; };
    select.addEventListener("change", sync);
    sync();
    const form = h("form", {class: "panel-add", "aria-label": `Add ${name} to a collection`},
      h("label", {}, "Add to ", select), newBox, h("button", {type: "submit", class: "primary"}, "Add"), message);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const target = select.value || newName.value.trim();
      if (!target) { message.textContent = "Name the new collection first."; newName.focus(); return; }
      try {
        const added = select.value ? await addTo(target, item.id) : (await createWith(target, item.id), true);
        choose(target);
        message.textContent = added ? `Added ${name} to “${target}”.` : `${name} is in “${target}” already.`;
        if (done) done(target, added);
      } catch (e2) {
        message.textContent = e2.message;
      }
    });
    return form;
  }

  // --- the toast: what "+ Collection" did ---------------------------------------------------------

  function toast(text, withChange) {
    let box = $("panel-toast");
    if (!box) {
      box = h("div", {id: "panel-toast", class: "panel-toast", role: "status"});
      document.body.append(box);
    }
    fill(box, h("span", {}, text), withChange
      ? h("button", {type: "button", class: "link", onclick: () => { box.hidden = true; chooseDialog(withChange); }},
          "Change collection") : null);
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { if (!box.contains(document.activeElement)) box.hidden = true; }, 8000);
  }

  async function quickAdd(result, button) {
    const name = result.title || result.id;
    if (!P.chosen) { chooseDialog({result, button}); return; }
    button.disabled = true;
    try {
      const added = await addTo(P.chosen, result.id);
      confirmAdded(button, P.chosen, added);
      toast(added ? `Added ${name} to “${P.chosen}”.` : `${name} is in “${P.chosen}” already.`, {result, button});
    } catch (e) {
      toast(`${e.message}`, {result, button});  // e.g. the collection was deleted: choose another
    } finally {
      button.disabled = false;
    }
  }

  function confirmAdded(button, target, added) {
    const name = button.closest(".card-wrap")?.querySelector(".card .title")?.textContent || "it";
    button.classList.add("added");
    button.textContent = "✓ In collection";
    button.setAttribute("aria-label", `In collection “${target}”: ${name}; add it to another`);
    button.title = `${added ? "Added to" : "Already in"} “${target}”; click to add it again elsewhere after changing the collection`;
  }

  // which collection "+ Collection" adds to: asked once, in a small dialog
  async function chooseDialog({result, button}) {
    if (!P.chooser) {
      P.chooser = h("dialog", {id: "panel-chooser", class: "panel-dialog chooser", "aria-labelledby": "panel-chooser-title"});
      P.chooser.addEventListener("keydown", (e) => { if (e.key === "Escape") e.stopPropagation(); });
      P.chooser.addEventListener("close", () => { if (P.chooser.returnTo?.isConnected) P.chooser.returnTo.focus(); });
      document.body.append(P.chooser);
    }
    const name = result.title || result.id;
    const form = await addForm(result, (target, added) => {
      P.chooser.close();
      if (button.isConnected) confirmAdded(button, target, added);
      toast(added ? `Added ${name} to “${target}”.` : `${name} is in “${target}” already.`, {result, button});
    });
    fill(P.chooser, h("h2", {id: "panel-chooser-title"}, `Add ${name} to a collection`),
      h("p", {class: "muted"}, "“+ Collection” on the other cards then adds to the same collection."),
      form, h("div", {class: "panel-buttons"}, h("button", {type: "button", onclick: () => P.chooser.close()}, "Cancel")));
    P.chooser.returnTo = button;
    P.chooser.showModal();
    form.querySelector("select").focus();
  }

  // --- the panel ----------------------------------------------------------------------------------

  function dialog() {
    if (P.dialog) return P.dialog;
    const d = h("dialog", {id: "item-panel", class: "panel-dialog", "aria-labelledby": "panel-title"});
    // Esc closes the panel only, not also the search view behind it (app.js goes back on Esc)
    d.addEventListener("keydown", (e) => { if (e.key === "Escape") e.stopPropagation(); });
    d.addEventListener("close", () => {
      P.seq++;
      const back = P.opener?.isConnected ? P.opener
        : Array.from(document.querySelectorAll("#view-body .card")).find((c) => c.dataset.id === P.item?.id);
      if (back) back.focus();
    });
    d.addEventListener("click", (e) => { if (e.target === d) d.close(); });  // a click on the backdrop
    document.body.append(d);
    P.dialog = d;
    return d;
  }

  // the models whose similar items the panel shows: the server's, and the one it compares with (or the
  // store's other model)
  function models() {
    const hl = P.health;
    if (!hl) return [];
    const other = hl.compare_with || (hl.models.find((m) => m.name !== hl.default_model) || {}).name;
    return other ? [hl.default_model, other] : [hl.default_model];
  }

  const kindOf = (name) => {
    const m = (P.health?.models || []).find((x) => x.name === name);
    return m ? (m.text ? "vision-language" : "image only") : "";
  };

  function value(v) {
    if (v == null || v === "") return "—";
    if (Array.isArray(v)) return v.join(", ");
    if (typeof v === "object") return JSON.stringify(v);
    return typeof v === "number" ? v.toLocaleString(undefined, {maximumFractionDigits: 6}) : String(v);
  }

  // every field of the item: vrec's own (id, size, photos) and each metadata column
  function fields(item) {
    const rows = [["id", item.id]];
    if (item.width != null) rows.push(["size", `${item.width} × ${item.height} px`]);
    if (item.photos != null) rows.push(["photos", item.photos]);
    for (const [k, v] of Object.entries(item.metadata || {})) rows.push([k, v]);
    return h("table", {class: "panel-fields", "aria-label": "Every field of the item"},
      h("tbody", {}, rows.map(([k, v]) => h("tr", {dataset: {field: k}}, h("th", {scope: "row"}, k), h("td", {}, value(v))))));
  }

  function photos(item, name) {
    const ids = item.photo_ids && item.photo_ids.length ? item.photo_ids : [item.id];
    const big = h("img", {id: "panel-photo", src: "/thumb/" + encodeId(ids[0]), alt: name});
    const strip = ids.length > 1 ? h("div", {class: "panel-strip", role: "group", "aria-label": `All ${ids.length} photos of ${name}`},
      ids.map((pid, i) => h("button", {type: "button", class: "panel-thumb", "aria-pressed": i === 0 ? "true" : "false",
                                       "aria-label": `Photo ${i + 1} of ${ids.length}`, dataset: {photo: pid},
                                       onclick: (e) => {
                                         big.src = "/thumb/" + encodeId(pid);
                                         big.alt = `${name}, photo ${i + 1} of ${ids.length}`;
                                         for (const b of strip.children) b.setAttribute("aria-pressed", b === e.currentTarget ? "true" : "false");
                                       }},
        h("img", {src: "/thumb/" + encodeId(pid), alt: "", loading: "lazy"})))) : null;
    return h("div", {class: "panel-photos"}, h("span", {class: "panel-big photo"}, big), strip);
  }

  function similarColumn(model, answer, error) {
    const list = answer ? answer.results : [];
    return h("section", {class: "panel-similar-col", dataset: {model}, "aria-label": `Similar by ${model}`},
      h("h3", {}, model, h("span", {class: "muted"}, ` ${kindOf(model)} · scores on its own scale`)),
      error ? h("p", {class: "panel-msg"}, error) : !list.length ? h("p", {class: "muted"}, "No similar items.") : null,
      h("ol", {class: "panel-similar-list"}, list.map((r) => h("li", {},
        h("button", {type: "button", class: "panel-sim", dataset: {id: r.id}, onclick: () => openPanel(r, P.opener),
                     "aria-label": `${r.title || r.id}, score ${r.score.toFixed(3)}: details`},
          h("img", {src: r.thumb, alt: "", loading: "lazy"}),
          h("span", {class: "panel-sim-title"}, r.title || r.id),
          h("span", {class: "panel-sim-score"}, r.score.toFixed(3)))))));
  }

  async function openPanel(result, opener) {
    const d = dialog();
    const seq = ++P.seq;
    P.opener = opener || document.activeElement;
    P.item = result;
    const name = result.title || result.id;
    fill(d, h("div", {class: "panel-head"},
        h("h2", {id: "panel-title", tabindex: "-1"}, name),
        h("button", {type: "button", class: "panel-close", onclick: () => d.close(), "aria-label": "Close the details"}, "Close")),
      h("p", {class: "muted panel-loading"}, "Loading…"));
    if (!d.open) d.showModal();
    $("panel-title").focus();
    const ms = models();
    // the view's filters hold for the similar items too (as in the similar view and side by side)
    const filters = (window.vrecApp?.current()?.opts?.filters || []).filter(Boolean);
    const among = filters.map((f) => "&filter=" + encodeURIComponent(f)).join("");
    const [item, ...similar] = await Promise.all([
      call("/api/items/" + encodeId(result.id)).catch((e) => ({error: e.message})),
      ...ms.map((m) => call("/api/similar/" + encodeId(result.id) + `?k=${SIMILAR}&model=${encodeURIComponent(m)}${among}`)
        .catch((e) => ({error: e.message})))]);
    if (seq !== P.seq) return;  // closed, or another item opened meanwhile
    if (item.error) {
      fill(d, d.firstChild, h("p", {class: "panel-msg", role: "alert"}, item.error));
      return;
    }
    P.item = item;
    const two = ms.length > 1;
    fill(d,
      h("div", {class: "panel-head"},
        h("h2", {id: "panel-title", tabindex: "-1"}, name),
        h("button", {type: "button", class: "panel-close", onclick: () => d.close(), "aria-label": "Close the details"}, "Close")),
      h("div", {class: "panel-main"},
        photos(item, name),
        h("div", {class: "panel-info"}, fields(item), h("div", {class: "panel-add-box"}),
          h("button", {type: "button", class: "panel-all", onclick: () => { d.close(); window.vrecApp?.showSimilar(result); }},
            "All similar items →"))),
      h("section", {class: "panel-similar", "aria-labelledby": "panel-similar-title"},
        h("h3", {id: "panel-similar-title"}, two ? `Similar items by ${ms[0]} and ${ms[1]}` : `Similar items by ${ms[0]}`),
        filters.length ? h("p", {class: "muted panel-note panel-among"}, "Among items with " + filters.join(", ") + ".") : null,
        two ? h("p", {class: "muted panel-note"}, "Scores are not comparable between the two models: each is on its own "
                                                   + "model's scale. Compare ranks, and what both found.") : null,
        h("div", {class: "panel-similar-cols" + (two ? " two" : "")},
          ms.map((m, i) => similarColumn(m, similar[i].error ? null : similar[i], similar[i].error)))));
    const form = await addForm(item, null);
    if (seq !== P.seq) return;
    d.querySelector(".panel-add-box").append(form);
    $("panel-title").focus();
  }

  // --- a card's buttons ---------------------------------------------------------------------------

  function cardTools(card, result) {
    const name = result.title || result.id;
    const details = h("button", {type: "button", class: "card-tool details", "aria-label": `Details of ${name}`,
                                 title: "Every field, all photos, similar items by each model, add to a collection"},
      "Details");
    details.addEventListener("click", () => openPanel(result, details));
    const add = h("button", {type: "button", class: "card-tool collect", "aria-label": `Add ${name} to a collection`,
                             title: "Add to the collection chosen (asked the first time)"}, "+ Collection");
    add.addEventListener("click", () => quickAdd(result, add));
    return h("div", {class: "card-wrap", dataset: {id: result.id}}, card,
      h("div", {class: "card-tools"}, details, add));
  }

  window.vrecPanel = {cardTools, open: openPanel};

  document.addEventListener("vrec:render", (e) => {
    P.view = e.detail.view;
    P.health = e.detail.health;
  });
})();
