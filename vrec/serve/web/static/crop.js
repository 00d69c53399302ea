// vrec serve: search a region of the photo. On a photo search, "Crop…" opens the photo large: drag a
// rectangle over it (or move it with the arrow keys, resize it with Shift+arrows), then "Search this
// region". The server crops its kept copy of the photo (crop=x,y,w,h, fractions of the photo's width and
// height), so the region is in the address too. The view's head then shows the region searched.
"use strict";

(() => {
  const {h} = window.vrecDom;
  const STEP = 0.02;     // an arrow key moves or resizes the region by 2% of the photo
  const SMALLEST = 0.05;  // the smallest region: 5% of the photo's width and height

  const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
  const round = (x) => Math.round(x * 1000) / 1000;
  const WHOLE = {x: 0, y: 0, w: 1, h: 1};

  function parse(text) {
    const v = String(text || "").split(",").map(Number);
    if (v.length !== 4 || v.some((n) => !Number.isFinite(n))) return {...WHOLE};
    return {x: v[0], y: v[1], w: v[2], h: v[3]};
  }
  const isWhole = (b) => b.x <= 0.001 && b.y <= 0.001 && b.w >= 0.999 && b.h >= 0.999;
  const text = (b) => [b.x, b.y, b.w, b.h].map(round).join(",");
  const pct = (x) => Math.round(x * 100) + "%";
  const describe = (b) => isWhole(b) ? "the whole photo"
    : `from ${pct(b.x)} across and ${pct(b.y)} down, ${pct(b.w)} wide and ${pct(b.h)} high`;

  let dialog = null, stage = null, img = null, frame = null, said = null;
  let box = {...WHOLE};

  function draw() {
    Object.assign(frame.style, {left: pct(box.x), top: pct(box.y), width: pct(box.w), height: pct(box.h)});
    frame.setAttribute("aria-label", `Region searched: ${describe(box)}. Arrow keys move it, Shift+arrow keys resize it.`);
    said.textContent = `Region: ${describe(box)}.`;
  }

  // where the pointer is on the photo, as fractions of its width and height
  function at(event) {
    const r = img.getBoundingClientRect();
    return {x: clamp((event.clientX - r.left) / r.width, 0, 1), y: clamp((event.clientY - r.top) / r.height, 0, 1)};
  }

  function wireDrag() {
    let from = null, before = null;
    stage.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      e.preventDefault();
      from = at(e);
      before = {...box};
      stage.setPointerCapture(e.pointerId);
    });
    stage.addEventListener("pointermove", (e) => {
      if (!from) return;
      const to = at(e);
      box = {x: Math.min(from.x, to.x), y: Math.min(from.y, to.y), w: Math.abs(to.x - from.x), h: Math.abs(to.y - from.y)};
      draw();
    });
    const end = () => {
      if (!from) return;
      from = null;
      if (box.w < SMALLEST || box.h < SMALLEST) box = before;  // a click, not a drag: keep the region
      draw();
      frame.focus();
    };
    stage.addEventListener("pointerup", end);
    stage.addEventListener("pointercancel", end);
  }

  function onKey(e) {
    if (e.key === "Enter") {  // on the region, Enter searches it
      e.preventDefault();
      dialog.querySelector("form").requestSubmit();
      return;
    }
    const d = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]}[e.key];
    if (!d) return;
    e.preventDefault();
    if (e.shiftKey) {  // resize from the bottom-right corner
      box.w = clamp(box.w + d[0] * STEP, SMALLEST, 1 - box.x);
      box.h = clamp(box.h + d[1] * STEP, SMALLEST, 1 - box.y);
    } else {
      box.x = clamp(box.x + d[0] * STEP, 0, 1 - box.w);
      box.y = clamp(box.y + d[1] * STEP, 0, 1 - box.h);
    }
    draw();
  }

  function make() {
    img = h("img", {alt: "Your photo", draggable: "false"});
    frame = h("div", {class: "crop-frame", tabindex: "0", role: "group", onkeydown: onKey});  // Enter: search it
    stage = h("div", {class: "crop-stage"}, img, frame);
    said = h("p", {class: "crop-said", "aria-live": "polite"});
    const form = h("form", {method: "dialog"},
      h("h2", {id: "crop-title"}, "Search a region of the photo"),
      h("p", {class: "crop-how", id: "crop-how"}, "Drag over the photo to choose a region; or move the region with the arrow keys, " +
        "resize it with Shift+arrow keys, and press Enter to search it."),
      stage, said,
      h("div", {class: "crop-buttons"},
        h("button", {type: "button", id: "crop-whole", onclick: () => { box = {...WHOLE}; draw(); }}, "Whole photo"),
        h("button", {type: "button", onclick: () => dialog.close()}, "Cancel"),
        h("button", {type: "submit", class: "primary", id: "crop-search"}, "Search this region")));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      dialog.close();
      window.vrecApp.cropPhoto(isWhole(box) ? null : text(box));
    });
    dialog = h("dialog", {id: "crop-dialog", class: "crop-dialog", "aria-labelledby": "crop-title",
                          "aria-describedby": "crop-how"}, form);
    // Esc closes the dialog only: the page's own Esc ("go back") must not see it
    dialog.addEventListener("keydown", (e) => { if (e.key === "Escape") e.stopPropagation(); });
    document.body.append(dialog);
    wireDrag();
  }

  function open(view) {
    if (!dialog) make();
    box = parse(view.crop);
    img.src = view.preview;
    draw();
    dialog.showModal();
    frame.focus();
  }

  // the head's photo shows the region searched: the photo drawn cropped on a canvas
  function showRegion(view) {
    const shown = document.querySelector("#view-head .query-photo img");
    if (!shown || !view.crop) return;
    const b = parse(view.crop);
    const paint = () => {
      const sw = shown.naturalWidth * b.w, sh = shown.naturalHeight * b.h;
      if (!sw || !sh) return;
      const scale = 96 / Math.max(sw, sh);
      const canvas = h("canvas", {width: Math.round(sw * scale), height: Math.round(sh * scale), class: "crop-region",
                                  role: "img", "aria-label": `The region of your photo searched: ${describe(b)}`});
      canvas.getContext("2d").drawImage(shown, shown.naturalWidth * b.x, shown.naturalHeight * b.y, sw, sh,
                                        0, 0, canvas.width, canvas.height);
      shown.replaceWith(canvas);
    };
    if (shown.complete && shown.naturalWidth) paint();
    else shown.addEventListener("load", paint, {once: true});
  }

  document.addEventListener("vrec:render", (e) => {
    const view = e.detail.view;
    if (view.kind !== "image" || !view.photoId || !view.preview) return;
    const actions = document.querySelector("#view-head .actions");
    if (actions) {
      actions.prepend(h("button", {type: "button", id: "crop-button", onclick: () => open(view),
                                   title: "Search only a part of the photo (one object of several)"},
        view.crop ? "Change region…" : "Crop…"));
    }
    showRegion(view);
  });
})();
