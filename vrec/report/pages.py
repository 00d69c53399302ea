"""HTML: every page vrec writes, in one place.

Search results (``--html``), side-by-side comparisons, evaluation reports (Markdown with SVG
charts, HTML, JSON), the A/B analysis page and its chart, and style maps are self-contained pages
-- photos inlined as thumbnails, no external assets -- so a merchandiser can mail one around. The
web app's "save as gallery" uses the same functions. Terminal tables live in ``vrec.report.render``.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from vrec.base.files import atomic_path
from vrec.report import beyond_report
from vrec.report.languages import language_tables
from vrec.report.ranking import ranking_tables
from vrec.report.render import METRIC_NAMES, TASK_NAMES, figure, fmt


def thumbnail(path: str | Path, size: int = 160) -> str:
    """A data URI of a small JPEG of the image, or '' when it cannot be read."""
    from PIL import Image

    from vrec.ingest.catalog import BadImage, load_image

    try:
        img = load_image(path)
    except BadImage:
        return ""
    img.thumbnail((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


PAGE_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px} h2{font-size:16px;margin:28px 0 8px} .meta{color:#666;font-size:13px}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{width:172px;background:#fff;border:1px solid #ddd;border-radius:8px;padding:6px;font-size:12px}
.card img{width:160px;height:160px;object-fit:contain;display:block;margin:auto;background:#fff}
.card.common{border:2px solid #e08a00;background:#fff7e8}
.card.query{border:2px solid #2a6ad8}
.rank{font-weight:600} .score{color:#555;float:right}
table.summary{border-collapse:collapse;font-size:13px} table.summary td,table.summary th{border:1px solid #ddd;padding:4px 8px}
.bar{background:#2a6ad8;height:12px;display:inline-block}
"""


def photo_at(root: Path, path: str) -> Path | None:
    """A stored photo's file on this machine: below the catalog root, absolute, or (behind a URL) its
    downloaded copy in the default photo cache; None when there is none."""
    from vrec.ingest.feed_source import local_photo

    return local_photo({"root": str(root)}, str(path))


def card(path: str | Path | None, lines: Iterable[str], cls: str = "", alt: str = "") -> str:
    src = thumbnail(path) if path else ""
    img = f'<img src="{src}" alt="{html.escape(alt, quote=True)}">' if src else '<div style="height:160px"></div>'
    body = "<br>".join(lines)
    return f'<div class="card {cls}">{img}{body}</div>'


def item_lines(row, label_cols: Sequence[str] = ()) -> list[str]:
    title = next((row[c] for c in ("title", "productDisplayName", "name") if c in row.index and fmt(row[c])), row["id"])
    lines = [f'<span class="rank">#{row["rank"]}</span><span class="score">{row["score"]:.3f}</span>'
             if "rank" in row.index else "", html.escape(fmt(title))]
    for c in label_cols:
        if c in row.index:
            lines.append(f'<span class="meta">{html.escape(c)}: {html.escape(fmt(row[c]))}</span>')
    return [x for x in lines if x]


def pd_row(d: dict):
    import pandas as pd

    return pd.Series(d)


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{PAGE_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def write_page(path: str | Path, title: str, body: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page(title, body), encoding="utf-8")


def search_html(result, root: Path) -> str:
    """The body of a search page: the query, then a grid of result thumbnails."""
    parts = [f'<p class="meta">model {html.escape(result.model)} · {len(result.table)} results</p>']
    if result.query_path:
        lines = [html.escape(result.query)]
        if result.query_item:
            lines += item_lines(pd_row(result.query_item))
        parts.append('<h2>Query</h2><div class="grid">' + card(result.query_path, lines, "query") + "</div>")
    else:
        parts.append(f"<h2>Query: “{html.escape(result.query)}”</h2>")
    cards = [card(photo_at(root, r["path"]), item_lines(r, [c for c in ("found_by", "category", "articleType", "price")
                                                                if c in r.index]))
             for _, r in result.table.iterrows()]
    parts.append('<h2>Results</h2><div class="grid">' + "".join(cards) + "</div>")
    return "".join(parts)


def collection_html(collection, table, root: Path) -> str:
    """The body of a collection's page: its query, then a card per item in the collection's order
    (photo inlined, its title as the photo's alt text, its id, whether it is pinned, its note)."""
    q = collection.query
    what = {"text": f"“{q.text}”", "item": f"similar to {q.item}", "image": f"like the photo {Path(q.image or '').name}"}
    filters = f" · filters: {', '.join(q.filters)}" if q.filters else ""
    by = f" by {collection.by}" if collection.by else ""
    parts = [f'<p class="meta">Query: {html.escape(what.get(q.kind, q.kind))} · model {html.escape(q.model)}'
             f'{html.escape(filters)} · {len(table)} items · saved {html.escape(collection.updated + by)} '
             f'(version {collection.version})</p>']
    cards = []
    for _, r in table.iterrows():
        title = r["title"] if isinstance(r["title"], str) and r["title"] else r["id"]
        lines = [f'<span class="rank">#{r["rank"]}</span>' + (' <span class="score">pinned</span>' if r["pinned"] else ""),
                 html.escape(title), f'<span class="meta">{html.escape(r["id"])}</span>']
        if r["note"]:
            lines.append(f"<i>{html.escape(r['note'])}</i>")
        cards.append(card(photo_at(root, r["path"]) if r["path"] else None, lines, "query" if r["pinned"] else "",
                          alt=title))
    parts.append('<div class="grid">' + "".join(cards) + "</div>")
    return "".join(parts)


def collection_file(fmt: str, collection, table, root: Path) -> str:
    """A collection's export as text: ``html`` (a self-contained page), ``csv`` or ``json`` (from render)."""
    from vrec.report import render

    if fmt == "csv":
        return render.collection_csv(table)
    if fmt == "json":
        return render.collection_json(collection, table)
    return page(f"Collection: {collection.name}", collection_html(collection, table, root))


def compare_html(c) -> str:
    """The body of a compare page: summary numbers, then per query a row of neighbours per model."""
    parts = []
    if c.summary:
        s = c.summary
        parts.append(f"<p>Mean overlap@{s.k} between <b>{html.escape(c.left)}</b> and <b>{html.escape(c.right)}</b> "
                     f"over {s.items} items: <b>{s.mean_overlap:.2f}</b></p>")
        if s.label:
            rows = "".join(
                f"<tr><td>{html.escape(fmt(r[s.label]))}</td><td>{r['items']}</td>"
                f"<td>{_bar(r['left'])} {r['left']:.2f}</td><td>{_bar(r['right'])} {r['right']:.2f}</td></tr>"
                for _, r in s.per_label.head(25).iterrows())
            parts.append(
                f"<table class='summary'><tr><th>{html.escape(s.label)}</th><th>items</th>"
                f"<th>{html.escape(c.left)} agreement@{s.k}</th><th>{html.escape(c.right)} agreement@{s.k}</th></tr>"
                f"<tr><td><b>all</b></td><td>{s.labelled if s.labelled is not None else s.items}</td>"
                + "".join(f"<td>{_bar(a)} {a:.2f}</td>" if a is not None else "<td>—</td>"
                          for a in (s.left_agreement, s.right_agreement))
                + f"</tr>{rows}</table>")
        if s.beyond:
            parts.append(beyond_report.beyond_html(s.beyond, s.hubs, "model", s.k, s.label, c.left))
    for n in c.notes:
        parts.append(f"<p class='meta'>{html.escape(n)}</p>")
    parts.append("<p class='meta'>Orange frames: neighbours both models found.</p>")
    root = Path(c.root)
    for q in c.queries:
        label = f" · {html.escape(c.label)}: {html.escape(q.label)}" if q.label else ""
        parts.append(f"<h2>{html.escape(q.title)} <span class='meta'>({html.escape(q.query)}{label}) — "
                     f"overlap@{c.k} {q.overlap:.2f}</span></h2>")
        parts.append('<div class="grid">' + card(q.path, ["query", html.escape(q.title)], "query") + "</div>")
        for side in (q.left, q.right):
            cards = [card(photo_at(root, r["path"]), item_lines(r, [c.label] if c.label else []),
                          "common" if r["common"] else "")
                     for _, r in side.table.iterrows()]
            parts.append(f"<p class='meta'>{html.escape(side.model)}</p><div class='grid'>{''.join(cards)}</div>")
    return "".join(parts)


def _bar(x: float, width: int = 80) -> str:
    return f"<span class='bar' style='width:{int(round(x * width))}px'></span>"


PALETTE = ("#2a6ad8", "#e08a00", "#2e9e5b", "#b03a8c")


def bar_chart_svg(title: str, groups: list[str], series: dict[str, list[tuple[float, float, float]]],
                  width: int = 520, height: int = 220) -> str:
    """A grouped bar chart (one group per k, one bar per model) with 95% interval whiskers, as SVG."""
    left, bottom, top = 40, 30, 28
    plot_h = height - bottom - top
    n_models = max(len(series), 1)
    gw = (width - left - 10) / max(len(groups), 1)
    bw = gw * 0.7 / n_models
    y = lambda v: top + plot_h * (1 - max(0.0, min(1.0, v)))  # noqa: E731
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' font-size='11'>",
             f"<text x='{left}' y='16' font-size='13' font-weight='600'>{html.escape(title)}</text>"]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f"<line x1='{left}' x2='{width - 10}' y1='{y(tick):.1f}' y2='{y(tick):.1f}' stroke='#ddd'/>"
                     f"<text x='{left - 6}' y='{y(tick) + 4:.1f}' text-anchor='end' fill='#666'>{tick:g}</text>")
    for gi, g in enumerate(groups):
        x0 = left + gi * gw + gw * 0.15
        for si, (model, vals) in enumerate(series.items()):
            v, lo, hi = vals[gi]
            if v != v:
                continue
            x = x0 + si * bw
            parts.append(f"<rect x='{x:.1f}' y='{y(v):.1f}' width='{bw - 2:.1f}' height='{y(0) - y(v):.1f}' "
                         f"fill='{PALETTE[si % len(PALETTE)]}'><title>{html.escape(model)} {v:.3f} [{lo:.3f}, {hi:.3f}]</title></rect>")
            cx = x + (bw - 2) / 2
            if lo != lo or hi != hi:  # a figure without an interval (coverage, Gini)
                continue
            parts.append(f"<line x1='{cx:.1f}' x2='{cx:.1f}' y1='{y(lo):.1f}' y2='{y(hi):.1f}' stroke='#222'/>")
        parts.append(f"<text x='{left + gi * gw + gw / 2:.1f}' y='{height - 12}' text-anchor='middle'>{html.escape(g)}</text>")
    for si, model in enumerate(series):
        parts.append(f"<rect x='{width - 150}' y='{top + si * 14 - 9}' width='10' height='10' fill='{PALETTE[si % len(PALETTE)]}'/>"
                     f"<text x='{width - 136}' y='{top + si * 14}'>{html.escape(model)}</text>")
    parts.append("</svg>")
    return "".join(parts)


UNCHARTED = {"distinct"}  # counts, not shares: a 0..1 bar chart would cut them


def eval_charts(ev) -> list[tuple[str, str]]:
    """(name, svg) per metric: bars per k and model."""
    df = ev.table()
    charts = []
    for (task, label, metric), grp in df.groupby(["task", "label", "metric"], sort=False):
        if metric in UNCHARTED:
            continue
        ks = sorted({k for k in grp["k"] if k == k})
        groups = [f"k={int(k)}" for k in ks] or ["all"]
        series = {}
        for m in ev.models:
            g = grp[grp["model"] == m]
            if not len(g):
                continue
            if ks:
                g = g.set_index("k")
                series[m] = [(g.loc[k, "value"], g.loc[k, "ci_low"], g.loc[k, "ci_high"]) if k in g.index else (float("nan"),) * 3 for k in ks]
            else:
                series[m] = [(g["value"].iloc[0], g["ci_low"].iloc[0], g["ci_high"].iloc[0])]
        if all(v != v for vals in series.values() for v, _, _ in vals):
            continue  # no figure to draw (a note says why)
        title = f"{TASK_NAMES[task]} · {label} · {METRIC_NAMES[metric].replace('@k', '')}"
        name = re.sub(r"[^A-Za-z0-9]+", "-", f"{task}-{label}-{metric}").strip("-").lower()
        charts.append((name, bar_chart_svg(title, groups, series)))
    return charts


class Strong(str):
    """A table cell to show in bold (a difference whose interval excludes zero)."""


def eval_tables(ev) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The report's tables as plain cells -- (title, caption, header, rows) -- for every format."""
    df = ev.table()
    rows = []
    for (task, label, metric, k), grp in df.groupby(["task", "label", "metric", "k"], dropna=False, sort=False):
        by = grp.set_index("model")
        cells = []
        for m in ev.models:
            v, ci = figure(*by.loc[m, ["value", "ci_low", "ci_high"]], sep=", ") if m in by.index else ("—", "")
            cells.append(v + (f" [{ci}]" if ci else ""))
        name = METRIC_NAMES[metric].replace("@k", f"@{int(k)}" if k == k else "")
        rows.append([TASK_NAMES[task], str(label), name] + cells)
    # --search-modes on a model without a text tower may leave the main table empty: its own table alone
    tables = [("", "", ["task", "label", "metric"] + list(ev.models), rows)] if rows or not ev.search_modes else []
    if ev.comparisons:
        rows = []
        for c in ev.comparisons:
            d, ci = figure(c["difference"], *c["ci"], sep=", ", signed=True)
            name = METRIC_NAMES[c["metric"]].replace("@k", f"@{c['k']}" if c["k"] else "")
            rows.append([TASK_NAMES[c["task"]], str(c["label"]), name, Strong(d) if c["excludes_zero"] else d,
                         f"[{ci}]" if ci else "", c["winner"] if c["excludes_zero"] else "no clear winner"])
        tables.append(("Paired comparison",
                       f"Difference {ev.models[0]} − {ev.models[1]} over the same queries; bold where the 95% interval "
                       "excludes zero.", ["task", "label", "metric", "difference", "95% interval", "winner"], rows))
    from vrec.report.hybrid_report import search_modes_report

    return (tables + ranking_tables(ev) + language_tables(ev) + beyond_report.hub_cells(ev.hubs)
            + search_modes_report(ev, Strong))  # search_modes: vrec eval --search-modes


def eval_markdown(ev, chart_dir_name: str) -> str:
    """A Markdown report; charts are SVG files in ``chart_dir_name`` beside it."""
    lines = ([ev.ranking.verdict, ""] if ev.ranking is not None else []) + [
             f"# vrec evaluation: {', '.join(ev.models)}", "",
             f"{ev.items} items; labels: {', '.join(ev.labels) or '—'}; k = {', '.join(map(str, ev.ks))}. "
             "Values are means over queries with 95% bootstrap intervals.", ""]
    for title, caption, header, rows in eval_tables(ev):
        if title:
            lines += ["", f"## {title}", "", caption, ""]
        numeric = [i >= 3 and header[i] not in ("95% interval", "winner") for i in range(len(header))]
        lines += ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
        lines += ["| " + " | ".join(f"**{c}**" if isinstance(c, Strong) else c for c in r) + " |" for r in rows]
    lines += ["", "## Charts", ""]
    for name, _ in eval_charts(ev):
        lines.append(f"![{name}]({chart_dir_name}/{name}.svg)")
    if ev.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in ev.notes]
    return "\n".join(lines) + "\n"


def eval_html(ev) -> str:
    def cell(c: str, tag: str = "td") -> str:
        text = html.escape(c)
        return f"<{tag}>" + (f"<strong>{text}</strong>" if isinstance(c, Strong) else text) + f"</{tag}>"

    tables = ""
    for title, caption, header, rows in eval_tables(ev):
        if title:
            tables += f"<h2>{html.escape(title)}</h2><p class='meta'>{html.escape(caption)}</p>"
        tables += ("<table class='summary'><tr>" + "".join(cell(h, "th") for h in header) + "</tr>"
                   + "".join("<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in rows) + "</table>")
    charts = "".join(f"<div style='display:inline-block;margin:8px'>{svg}</div>" for _, svg in eval_charts(ev))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in ev.notes)
    verdict = f"<p><strong>{html.escape(ev.ranking.verdict)}</strong></p>" if ev.ranking is not None else ""
    return (verdict + f"<p class='meta'>{ev.items} items; k = {', '.join(map(str, ev.ks))}; 95% bootstrap intervals</p>"
            f"{tables}<h2>Charts</h2>{charts}" + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""))


REPORT_TYPES = (".md", ".html", ".htm", ".json")


def check_report_path(path: str | Path) -> None:
    """Refuse a report path that cannot be written, cheaply and before any evaluation runs.

    The same cases atomic_path refuses at write time (a folder, a device, a place that cannot be
    written), plus an unknown report type and, for .md, a file where the charts folder goes; so a
    long evaluation never ends in an error, and nothing is left half-written.
    """
    import os

    from vrec.base.errors import StoreError, VrecError

    path = Path(path)
    if path.is_dir():
        raise StoreError(f"{str(path)!r} is a folder; give a file name to write to (e.g. {str(path / 'eval.html')!r}).")
    if path.exists() and not path.is_file():
        from vrec.base.userfiles import describe

        raise StoreError(f"{str(path)!r} {describe(path)}; give the name of a file to write to.")
    if path.suffix.lower() not in REPORT_TYPES:
        raise VrecError(f"Unknown report type {path.suffix or path.name!r}; name the file .md, .html or .json.")
    chart_dir = path.with_name(path.stem + "_charts")
    if path.suffix.lower() == ".md" and chart_dir.exists() and not chart_dir.is_dir():
        raise StoreError(f"{str(chart_dir)!r} is a file, but the Markdown report puts its charts in a folder of "
                         "that name; move the file or name the report differently.")
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise StoreError(f"Cannot write {str(path)!r} ({str(folder)!r} is not a folder); choose a writable location.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"Cannot write {str(path)!r} (permission denied); choose a writable location.")


def write_eval_report(ev, path: str | Path) -> None:
    """Write the report as .md (with an SVG folder beside it), .html (self-contained) or .json.

    Metrics without a figure are null in JSON (never a bare NaN, which is not JSON).
    """
    import shutil

    from vrec.base.errors import StoreError
    from vrec.experiments.evaluate import to_dict

    check_report_path(path)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(to_dict(ev), indent=2, allow_nan=False))
    elif suffix in (".html", ".htm"):
        write_page(path, f"vrec evaluation: {', '.join(ev.models)}", eval_html(ev))
    else:
        chart_dir = path.with_name(path.stem + "_charts")
        made = not chart_dir.exists()
        try:
            chart_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"Cannot write {str(chart_dir)!r} ({e.strerror or e}); choose a writable location.") from None
        try:
            for name, svg in eval_charts(ev):
                with atomic_path(chart_dir / f"{name}.svg") as tmp:
                    Path(tmp).write_text(svg)
            with atomic_path(path) as tmp:
                Path(tmp).write_text(eval_markdown(ev, chart_dir.name))
        except BaseException:
            if made:  # leave no half-written chart folder behind
                shutil.rmtree(chart_dir, ignore_errors=True)
            raise


def ab_lifts_svg(a, width: int = 640) -> str:
    """A forest plot of an A/B analysis (``vrec.experiments.ab_analysis.Analysis``): relative lift of each
    treatment on each metric with its interval, around zero. The .html report inlines it; the .md
    report links it as a file."""
    from vrec.experiments.ab_analysis import fmt_p, fmt_pct

    rows = [x for x in a.lifts if x.rel_lift == x.rel_lift]
    row_h, top, left, right = 26, 40, 190, 30
    height = top + row_h * max(1, len(rows)) + 34
    if not rows:
        return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='60' font-family='sans-serif' "
                f"font-size='12'><text x='10' y='30'>no relative lift to draw (a control value is 0)</text></svg>")
    lo = min(min(x.rel_ci[0] for x in rows), 0.0)
    hi = max(max(x.rel_ci[1] for x in rows), 0.0)
    pad = (hi - lo) * 0.08 or 0.01
    lo, hi = lo - pad, hi + pad
    X = lambda v: left + (width - left - right) * (v - lo) / (hi - lo)  # noqa: E731
    level = 1 - a.alpha / (len(a.arms) - 1)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' "
             f"font-size='12'>",
             f"<text x='10' y='18' font-size='13' font-weight='600'>Relative lift against {html.escape(a.control)} "
             f"({level:.0%} interval)</text>"]
    zero = X(0.0)
    parts.append(f"<line x1='{zero:.1f}' x2='{zero:.1f}' y1='{top - 8}' y2='{height - 28}' stroke='#888' "
                 f"stroke-dasharray='4 3'/>")
    for i, x in enumerate(rows):
        y = top + i * row_h + row_h / 2
        colour = "#2e9e5b" if x.significant and x.rel_lift > 0 else "#c0392b" if x.significant else "#555"
        label = html.escape(f"{x.metric} · {x.arm}")
        parts.append(f"<text x='{left - 8}' y='{y + 4:.1f}' text-anchor='end'>{label}</text>")
        parts.append(f"<line x1='{X(x.rel_ci[0]):.1f}' x2='{X(x.rel_ci[1]):.1f}' y1='{y:.1f}' y2='{y:.1f}' "
                     f"stroke='{colour}' stroke-width='2'/>")
        for end in x.rel_ci:
            parts.append(f"<line x1='{X(end):.1f}' x2='{X(end):.1f}' y1='{y - 5:.1f}' y2='{y + 5:.1f}' stroke='{colour}' "
                         f"stroke-width='2'/>")
        tip = html.escape(f"{x.metric} · {x.arm}: {fmt_pct(x.rel_lift)} [{fmt_pct(x.rel_ci[0])}, "
                          f"{fmt_pct(x.rel_ci[1])}], p {fmt_p(x.p_value)}")
        parts.append(f"<circle cx='{X(x.rel_lift):.1f}' cy='{y:.1f}' r='4.5' fill='{colour}'><title>{tip}</title></circle>")
    for tick in _nice_ticks(lo, hi):
        text = "0%" if abs(tick) < 1e-12 else f"{tick * 100:+.{0 if abs(tick) >= 0.01 else 1}f}%"
        parts.append(f"<text x='{X(tick):.1f}' y='{height - 10}' text-anchor='middle' fill='#666'>{text}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (multiples of 1, 2 or 5 times a power of ten) between lo and hi, zero among them."""
    raw = (hi - lo) / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


def ab_html(a) -> str:
    """The body of an A/B analysis page: the summary (a sample-ratio mismatch in red, first), the
    lifts table in the cells the terminal and Markdown show, the chart, the notes."""
    from vrec.experiments.ab_analysis import LIFT_HEADER, lift_rows, summary_lines

    summary = "".join((f"<p style='background:#fde2e1;border:2px solid #c0392b;padding:10px;font-weight:600'>"
                       f"{html.escape(line)}</p>" if line.startswith("SAMPLE RATIO") else
                       f"<p class='meta'>{html.escape(line)}</p>") for line in summary_lines(a))
    table = ("<table class='summary'><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in LIFT_HEADER) + "</tr>"
             + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in lift_rows(a))
             + "</table>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in a.notes)
    return (summary + "<h2>Lifts</h2>" + table + "<h2>Chart</h2>" + ab_lifts_svg(a)
            + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""))


CLUSTER_COLOURS = ("#2a6ad8", "#e08a00", "#2e9e5b", "#b03a8c", "#c0392b", "#7f8c8d", "#8e44ad", "#16a085",
                   "#d35400", "#2c3e50", "#f1c40f", "#27ae60", "#e84393", "#0984e3", "#6c5ce7", "#00b894",
                   "#fdcb6e", "#e17055", "#636e72", "#a29bfe")


def map_html(sm, max_points: int = 3000) -> str:
    """The body of a style-map page: a 2-D scatter coloured by cluster, then a row per cluster."""
    items = sm.items
    if len(items) > max_points:
        items = items.sample(max_points, random_state=0)
    w, h, pad = 720, 480, 20
    x, y = items["x"].to_numpy(), items["y"].to_numpy()
    sx = lambda v: pad + (v - x.min()) / max(x.max() - x.min(), 1e-9) * (w - 2 * pad)  # noqa: E731
    sy = lambda v: h - pad - (v - y.min()) / max(y.max() - y.min(), 1e-9) * (h - 2 * pad)  # noqa: E731
    title_col = next((c for c in ("title", "productDisplayName") if c in items.columns), "id")
    dots = "".join(
        f"<circle cx='{sx(r.x):.1f}' cy='{sy(r.y):.1f}' r='4' fill='{CLUSTER_COLOURS[(r.cluster - 1) % len(CLUSTER_COLOURS)]}' "
        f"fill-opacity='0.75'><title>{html.escape(str(getattr(r, title_col)))} — cluster {r.cluster}: "
        f"{html.escape(r.cluster_name)}</title></circle>" for r in items.itertuples())
    legend = "".join(f"<div><span style='display:inline-block;width:10px;height:10px;background:"
                     f"{CLUSTER_COLOURS[(c.id - 1) % len(CLUSTER_COLOURS)]}'></span> {c.id}. {html.escape(c.name)} ({c.size})</div>"
                     for c in sm.clusters)
    parts = [f"<p class='meta'>{sm.k} clusters ({html.escape(sm.criterion)}); map = first two principal components; "
             f"hover a point for the product.</p>",
             f"<div style='display:flex;gap:16px'><svg width='{w}' height='{h}' style='background:#fff;border:1px solid #ddd'>"
             f"{dots}</svg><div style='font-size:13px'>{legend}</div></div>"]
    root = Path(sm.root)
    paths = dict(zip(sm.items["id"], sm.items["path"]))
    titles = dict(zip(sm.items["id"], sm.items[title_col])) if title_col in sm.items.columns else {}
    for c in sm.clusters:
        mix = f" · {html.escape(sm.label)}: " + ", ".join(f"{html.escape(a)} {b}" for a, b in c.label_mix) if c.label_mix else ""
        price = f" · price {c.price[0]:g}–{c.price[2]:g} (median {c.price[1]:g})" if c.price else ""
        concepts = ", ".join(f"{html.escape(n)} ({p:.2f})" for n, p in c.concepts)
        parts.append(f"<h2 style='color:{CLUSTER_COLOURS[(c.id - 1) % len(CLUSTER_COLOURS)]}'>{c.id}. {html.escape(c.name)} "
                     f"<span class='meta'>{c.size} items{mix}{price}</span></h2>"
                     + (f"<p class='meta'>closest concepts: {concepts}</p>" if concepts else ""))
        cards = [card(photo_at(root, paths[i]), [html.escape(str(titles.get(i, i)))]) for i in c.representatives]
        parts.append("<div class='grid'>" + "".join(cards) + "</div>")
    return "".join(parts)
