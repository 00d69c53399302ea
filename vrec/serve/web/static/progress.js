// vrec serve: feedback while a photo search runs. The photo shows at once, above the old results (dimmed
// and not clickable meanwhile, by app.js), with what the server is doing: "Loading the photo model…" when
// /api/health says its image tower is not loaded yet (the first photo search after the server starts,
// before its background warm-up is done), else "Searching by photo…". Gone when the search ends.
"use strict";

(() => {
  const {h} = window.vrecDom;
  const $ = (id) => document.getElementById(id);
  let shown = 0;  // the search the box is about: a later one takes it over

  const busy = () => !$("busy").hidden;

  function hide() {
    const box = $("progress");
    box.hidden = true;
    box.replaceChildren();
  }

  async function photoReady(model) {
    try {
      const r = await fetch("/api/health");
      if (!r.ok) return true;
      const health = await r.json();
      const m = health.models.find((x) => x.name === (model || health.default_model));
      return !m || m.photo_ready !== false;
    } catch (e) {
      return true;  // nothing to say: the search itself reports what went wrong
    }
  }

  async function show(view) {
    const seq = ++shown;
    const box = $("progress");
    const src = view.preview || (view.photoId ? "/api/search/photo/" + encodeURIComponent(view.photoId) + "/image" : null);
    const what = h("span", {class: "progress-text"}, "Searching by photo…");
    box.replaceChildren(src ? h("img", {src, alt: "Your photo", class: "progress-photo"}) : null, what);
    box.hidden = false;
    if (!(await photoReady(view.opts?.model)) && seq === shown && busy()) {
      what.textContent = "Loading the photo model… The first photo search after the server starts waits for it; " +
                         "later ones are quick.";
    }
  }

  function start() {
    document.addEventListener("vrec:searching", (e) => {
      if (e.detail.view.kind === "image") show(e.detail.view);
      else { shown++; hide(); }
    });
    // the search is over (shown, failed or left): the box goes
    new MutationObserver(() => { if (!busy()) { shown++; hide(); } })
      .observe($("busy"), {attributes: true, attributeFilter: ["hidden"]});
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
