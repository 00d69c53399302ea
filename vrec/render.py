"""Turning results into something a person reads or looks at: terminal tables, JSON/CSV, HTML pages.

HTML pages are self-contained (thumbnails are embedded as data URIs), so a merchandiser can mail
one or open it offline.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Iterable, Sequence

from .store import atomic_path

# metadata columns worth a place in a narrow terminal table, in order of preference
PREFERRED_COLUMNS = ("title", "productDisplayName", "name", "category", "articleType", "colour", "baseColour",
                     "price", "tags")


def display_columns(table, extra: Sequence[str] = ()) -> list[str]:
    cols = [c for c in PREFERRED_COLUMNS if c in table.columns]
    cols += [c for c in extra if c in table.columns and c not in cols]
    return cols


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:,.2f}"
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return str(v)


def results_table(result, title: str | None = None):
    """A rich Table of a SearchResult."""
    from rich.table import Table

    t = result.table
    table = Table(title=title or f"{result.kind} query: {result.query}  [dim]({result.model})[/dim]", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    if "probability" in t.columns:
        table.add_column("match p", justify="right")
    table.add_column("id", overflow="fold")
    cols = display_columns(t)
    for c in cols:
        table.add_column(c, overflow="fold")
    for _, r in t.iterrows():
        row = [str(r["rank"]), f"{r['score']:.3f}"]
        if "probability" in t.columns:
            row.append(f"{r['probability']:.3f}")
        row.append(str(r["id"]))
        row += [fmt(r[c]) for c in cols]
        table.add_row(*row)
    return table


def to_records(table) -> list[dict]:
    """JSON-ready rows: numpy scalars become Python numbers, missing values None."""
    return json.loads(table.to_json(orient="records"))


def result_json(result) -> str:
    return json.dumps({"query": result.query, "kind": result.kind, "model": result.model,
                       "results": to_records(result.table), "notes": result.notes}, indent=2)


def thumbnail(path: str | Path, size: int = 160) -> str:
    """A data URI of a small JPEG of the image, or '' when it cannot be read."""
    from PIL import Image

    from .catalog import BadImage, load_image

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


def card(path: str | Path | None, lines: Iterable[str], cls: str = "") -> str:
    src = thumbnail(path) if path else ""
    img = f'<img src="{src}" alt="">' if src else '<div style="height:160px"></div>'
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
        parts.append('<h2>Query</h2><div class="grid">' + card(result.query_path, [html.escape(result.query)], "query") + "</div>")
    else:
        parts.append(f"<h2>Query: “{html.escape(result.query)}”</h2>")
    cards = [card(root / r["path"], item_lines(r, [c for c in ("category", "articleType", "price") if c in r.index]))
             for _, r in result.table.iterrows()]
    parts.append('<h2>Results</h2><div class="grid">' + "".join(cards) + "</div>")
    return "".join(parts)
