// vrec serve: the page on a phone. The filters, results count and model fold under one line
// ("Filters and options") on a narrow screen, so the first result shows without scrolling; they stay
// open when a filter is typed or in error, and always on a wide screen (where the fold's line is hidden).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const narrow = matchMedia("(max-width: 760px)");

  function filtersGiven() {
    const field = $("filters");
    return field.value.trim() !== "" || field.getAttribute("aria-invalid") === "true";
  }

  // "· 2 filters" on the fold's line, so a folded filter is not forgotten
  function count() {
    const n = $("filters").value.split(/[;,](?![^(]*\))/).filter((s) => s.trim()).length;
    $("options-count").textContent = n ? ` · ${n} filter${n === 1 ? "" : "s"}` : "";
  }

  function fit() {
    const fold = $("options-fold");
    if (!narrow.matches) fold.open = true;
    else if (filtersGiven()) fold.open = true;
    count();
  }

  function start() {
    const fold = $("options-fold");
    fold.open = !narrow.matches || filtersGiven();
    narrow.addEventListener("change", fit);
    $("filters").addEventListener("input", count);
    // a filter in error opens the fold: the field marked invalid must be seen
    new MutationObserver(fit).observe($("filters"), {attributes: true, attributeFilter: ["aria-invalid"]});
    document.addEventListener("vrec:render", fit);
    count();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
