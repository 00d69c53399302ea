"""Beyond-accuracy output: the most over-recommended items (``vrec eval``), and the coverage, Gini
and diversity tables of ``vrec compare --summary`` and ``vrec ab arms`` (terminal and HTML)."""
from __future__ import annotations

import html

HUBS_TITLE = "Most over-recommended items"
HUBS_CAPTION = ("The items found in the most top-k lists (their in-degree in the k-NN graph, at the largest k "
                "measured); 'share' is the share of all lists that show the item.")


def hub_cells(hubs: list[dict], who: str = "model") -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The hubs as one report table of plain cells (title, caption, header, rows), or none."""
    if not hubs:
        return []
    rows = [[str(h[who]), str(h["rank"]), str(h["id"]), str(h["title"]), f"{h['lists']:,}", f"{h['share']:.1%}"]
            for h in hubs]
    return [(HUBS_TITLE, HUBS_CAPTION, [who, "rank", "id", "title", "lists", "share"], rows)]


def hubs_table(hubs: list[dict], who: str = "model"):
    """Rich table of the most over-recommended items, or None without any."""
    from vrec.report.render import new_table, rich_text

    cells = hub_cells(hubs, who)
    if not cells:
        return None
    title, caption, header, rows = cells[0]
    t = new_table(title, caption=caption)
    for h in header:
        t.add_column(h, justify="right" if h in ("rank", "lists", "share") else "left", whole=h in (who, "rank"))
    for r in rows:
        t.add_row(*[rich_text(c) for c in r])
    return t


def _value(v, ci=None) -> str:
    from vrec.report.render import figure

    val, interval = figure(v, *(ci or (None, None)))
    return val + (f" [{interval}]" if interval else "")


def beyond_cells(rows: list[dict], who: str, label: str | None) -> tuple[list[str], list[list[str]]]:
    """Per model (or arm): coverage, Gini, diversity [interval], distinct labels [interval]."""
    header = [who, "coverage", "in-degree Gini", "intra-list distance"] + ([f"distinct {label} per list"] if label else [])
    body = []
    for r in rows:
        cells = [str(r[who]), _value(r["coverage"]), _value(r["gini"]), _value(r["diversity"], r.get("diversity_ci"))]
        if label:
            cells.append(_value(r.get("distinct"), r.get("distinct_ci")))
        body.append(cells)
    return header, body


BEYOND_CAPTION = ("coverage: share of the catalog in at least one list; Gini: 0 = every item recommended equally "
                  "often, towards 1 = a few hubs everywhere; intra-list distance: mean cosine distance within a list "
                  "(one ruler for all: {ruler}'s vectors)")


def beyond_table(rows: list[dict], who: str, k: int, label: str | None, ruler: str):
    """Rich table of coverage, Gini and diversity per model or arm."""
    from vrec.report.render import new_table, rich_text

    header, body = beyond_cells(rows, who, label)
    t = new_table(f"Beyond accuracy@{k}: coverage, hubs and diversity of each {who}'s lists",
                  caption=BEYOND_CAPTION.format(ruler=rich_text(ruler)))
    for h in header:
        t.add_column(rich_text(h), justify="left" if h == who else "right", whole=h == who)
    for r in body:
        t.add_row(*[rich_text(c) for c in r])
    return t


def compare_beyond_tables(c) -> list:
    """Rich tables of a compare summary's beyond-accuracy figures and hubs (none without a summary)."""
    s = c.summary
    if s is None or not s.beyond:
        return []
    return [beyond_table(s.beyond, "model", s.k, s.label, c.left)] + ([hubs_table(s.hubs)] if s.hubs else [])


def beyond_html(rows: list[dict], hubs: list[dict], who: str, k: int, label: str | None, ruler: str) -> str:
    """The same tables as HTML, for compare's page."""
    header, body = beyond_cells(rows, who, label)
    parts = [f"<h2>Beyond accuracy@{k}</h2><p class='meta'>{html.escape(BEYOND_CAPTION.format(ruler=ruler))}</p>",
             _html_table(header, body)]
    for title, caption, h, r in hub_cells(hubs, who):
        parts.append(f"<h2>{html.escape(title)}</h2><p class='meta'>{html.escape(caption)}</p>{_html_table(h, r)}")
    return "".join(parts)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    return ("<table class='summary'><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")
