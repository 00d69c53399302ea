// vrec serve: more of the results shown, and a floor under them. Plain JavaScript, no build step.
// Lives beside app.js: after each view app.js renders ("vrec:render") this file
// - puts "More results" under a list that filled its k: the same search again with twice as many
//   results (12, 24, 48 ... up to 1,000, the API's limit), the keyboard going on at the first new one;
// - hides the results whose match probability is under the minimum the person set (#floor, in %;
//   blank: off), saying how many it hid, with a button to show them again;
// - says so above the results when every match is weak (the best match probability under 1%).
// The match probability is SigLIP's (text searches on a vision-language model); a card carries it as
// data-prob. Results without one (photo, similar-item, words and words-and-meaning searches) are never
// hidden; with a minimum set over a text search's such results, a note says it is not applied.
"use strict";

(() => {
  const h = window.vrecDom.h;  // app.js's element builder (loaded first)
  const $ = (id) => document.getElementById(id);

  const MAX_K = 1000;  // the API's most results per request
  const WEAK = 0.01;   // every match below this probability: the low-confidence notice
  const R = {view: null, focusAt: null};

  const nextK = (k) => Math.min(MAX_K, k * 2);
  const pct = (p) => (p * 100 < 0.1 ? "<0.1%" : p * 100 < 10 ? (p * 100).toFixed(1) + "%" : Math.round(p * 100) + "%");

  // the minimum match probability set (0..1), or null when off (blank, 0 or not a number)
  function floor() {
    const field = $("floor");
    if (!field) return null;
    const n = Number(field.value.trim());
    const bad = field.value.trim() !== "" && (!Number.isFinite(n) || n < 0 || n > 100);
    if (bad) field.setAttribute("aria-invalid", "true"); else field.removeAttribute("aria-invalid");
    return field.value.trim() === "" || bad || n <= 0 ? null : n / 100;
  }

  // hide the weak results, and say what was hidden and whether all are weak
  function applyFloor() {
    const body = $("view-body");
    if (!body) return;
    body.querySelectorAll(".floor-note, .weak-note").forEach((n) => n.remove());
    const min = floor();
    let hidden = 0;
    for (const card of body.querySelectorAll(".card")) {
      const box = card.closest(".card-wrap") || card;
      const p = card.dataset.prob != null ? Number(card.dataset.prob) : null;
      const hide = min != null && p != null && p < min;
      box.hidden = hide;
      if (hide) hidden++;
    }
    const probs = Array.from(body.querySelectorAll(".card[data-prob]"), (c) => Number(c.dataset.prob));
    const best = probs.length ? Math.max(...probs) : null;
    const notes = [];
    if (best != null && best < WEAK) {
      notes.push(h("p", {class: "weak-note", role: "note"},
        h("strong", {}, "Low confidence: "), `every match is weak (the best has a match probability of ${pct(best)}). ` +
        "The catalog may hold nothing like this; try other words or fewer filters."));
    }
    const cards = body.querySelectorAll(".card").length;
    // a text search by words, or words and meaning: nothing to compare (photo and similar views go quietly)
    if (min != null && cards && !probs.length && R.view?.kind === "text") {
      notes.push(h("p", {class: "floor-note", role: "note"},
        "Min. match is not applied here: these results have no match probability " +
        "(only a text search matched by meaning only, on a vision-language model, has one)."));
    }
    if (hidden) {
      notes.push(h("p", {class: "floor-note"},
        `${hidden.toLocaleString()} weaker match${hidden === 1 ? "" : "es"} hidden (match probability under ${$("floor").value.trim()}%). `,
        h("button", {type: "button", class: "link", onclick: () => { $("floor").value = ""; applyFloor(); }}, "Show them")));
    }
    body.prepend(...notes);
  }

  // "More results" under a list that filled its k
  function addMore(view) {
    if (!view || !["text", "image", "similar"].includes(view.kind) || view.compare || !view.data) return;
    const k = view.opts.k, shown = view.data.results.length;
    const grid = $("view-body").querySelector(".grid");
    if (!grid) return;
    if (shown < k) return;  // every match is shown
    if (k >= MAX_K) {
      grid.after(h("p", {class: "more-box muted"}, `${shown.toLocaleString()} results: the most a search brings.`));
      return;
    }
    const next = nextK(k);
    const button = h("button", {type: "button", class: "more", id: "more-results",
                                title: `Run the search again for ${next.toLocaleString()} results (at most ${MAX_K.toLocaleString()})`},
      `More results (${next.toLocaleString()} in all)`);
    button.addEventListener("click", () => {
      const select = $("k");
      if (!Array.from(select.options).some((o) => o.value === String(next))) select.append(h("option", {}, String(next)));
      select.value = String(next);
      R.focusAt = shown;  // the keyboard goes on at the first new result
      select.dispatchEvent(new Event("change"));  // app.js runs the view again with the new k
    });
    grid.after(h("div", {class: "more-box"}, button,
      h("span", {class: "muted"}, ` ${shown.toLocaleString()} shown`)));
  }

  function start() {
    const field = $("floor");
    if (field) {
      field.addEventListener("input", applyFloor);
      field.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); applyFloor(); } });
    }
    document.addEventListener("vrec:render", (e) => {
      R.view = e.detail.view;
      addMore(R.view);
      applyFloor();
      const at = R.focusAt;
      R.focusAt = null;
      if (at != null) {
        setTimeout(() => {  // after app.js has placed the focus on the new view's heading
          const card = $("view-body").querySelectorAll(".card")[at];
          if (card) card.focus();
        }, 0);
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
