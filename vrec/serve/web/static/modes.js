// vrec serve: how a text search matches (docs/search.md, "Keyword and hybrid search"). Plain JavaScript.
// Lives beside app.js: when app.js has the server's /api/health ("vrec:health") this file fills the
// "Match by" chooser (#mode): words and meaning (hybrid), words only (keyword), meaning only (vector),
// the server's default chosen, and says under the form what the choice does. Without a keyword index
// the chooser stays disabled, saying how to get one. app.js reads the choice (options()), keeps it in
// the page address (?mode=, left out when it is the default) and runs the search again when it changes.
// "Meaning only" is off while a model without a text tower is chosen.
// It also makes each result's "found by" badge (window.vrecModes.badge), which app.js puts on the cards.
"use strict";

(() => {
  const h = window.vrecDom.h;  // app.js's element builder (loaded first)
  const $ = (id) => document.getElementById(id);

  const MODES = [  // the API's mode, the chooser's label
    ["hybrid", "Words and meaning"],
    ["keyword", "Words only"],
    ["vector", "Meaning only"],
  ];
  // badge text and its explanation, per leg that found a result
  const LEGS = {
    vector: ["meaning", "Found by meaning: the model sees what the words describe in the photo"],
    keyword: ["words", "Found by words: they are in its title, brand, description or ids"],
    both: ["words + meaning", "Found by its words and by meaning"],
    exact: ["exact id", "Its id, SKU or GTIN is the query"],
  };

  let columns = [];  // the metadata columns the keyword index covers

  function explain(mode) {
    const where = columns.length ? columns.slice(0, 6).join(", ") + (columns.length > 6 ? "…" : "") : "the catalog's text";
    if (mode === "keyword") {
      return `Words only: products whose ${where} hold your words (case and accents do not matter; end a word with * for ` +
        "its beginnings). Nothing that merely looks right.";
    }
    if (mode === "vector") {
      return "Meaning only: products that look like what you describe, as the model sees the photos; brand names, " +
        "SKUs and rare words may be missed.";
    }
    return `Words and meaning: products whose ${where} hold your words, and products that look like what you describe, ` +
      "ranked together; an exact id, SKU or GTIN comes first.";
  }

  function setUp(health) {
    const select = $("mode");
    if (!select) return;
    const indexed = !!health.keywords;
    columns = indexed ? health.keywords.columns || [] : [];
    const shown = indexed ? MODES : MODES.filter(([m]) => m === "vector");
    select.replaceChildren(...shown.map(([value, label]) =>
      h("option", {value, selected: value === (health.text_mode || "vector")}, label)));
    select.disabled = !indexed;
    select.dataset.default = health.text_mode || "vector";
    const help = $("mode-help");
    const say = () => {
      if (help) help.textContent = indexed ? explain(select.value) :
        "Matching by words is off: this store has no keyword index. Run “vrec index” on the store to search " +
        "titles, brands and SKUs too.";
    };
    select.addEventListener("change", say);
    // a model without a text tower (a CNN) cannot match by meaning: that choice is off while it is chosen
    // (capture: before app.js runs the search again for the new model)
    const hasText = (name) => (health.models || []).some((m) => m.name === name && m.text);
    const fitModel = () => {
      const model = $("model");
      const meaning = select.querySelector('option[value="vector"]');
      if (!model || !meaning || !indexed) return;
      meaning.disabled = !hasText(model.value);
      meaning.title = meaning.disabled ? "This model has no text tower: it finds products by their words only" : "";
      if (meaning.disabled && select.value === "vector") { select.value = "hybrid"; say(); }
    };
    document.addEventListener("change", (e) => { if (e.target && e.target.id === "model") fitModel(); }, true);
    document.addEventListener("vrec:render", fitModel);
    fitModel();
    say();
    // the address may choose another mode: app.js sets the chooser after this, so the help follows it
    document.addEventListener("vrec:render", say);
  }

  // the "found by" badge of a result of a keyword or hybrid search
  function badge(leg) {
    const [text, title] = LEGS[leg] || [leg, ""];
    return h("span", {class: "badge leg leg-" + leg, title},
      h("span", {class: "sr-only"}, "found by "), text);
  }

  window.vrecModes = {badge};
  document.addEventListener("vrec:health", (e) => setUp(e.detail));
})();
