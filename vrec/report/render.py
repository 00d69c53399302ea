"""Results as a person reads them in a terminal: tables that never cut data, and JSON.

Every table comes from :func:`new_table`, so wrapping, folding and stacking behave the same in
every command. HTML pages live in ``vrec.report.pages``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from vrec.base.records import to_records

# metadata columns worth a place in a narrow terminal table, in order of preference
PREFERRED_COLUMNS = ("title", "productDisplayName", "name", "brand", "category", "product_type", "articleType",
                     "colour", "baseColour", "price", "currency", "tags")


def display_columns(table, extra: Sequence[str] = ()) -> list[str]:
    cols = [c for c in PREFERRED_COLUMNS if c in table.columns]
    cols += [c for c in extra if c in table.columns and c not in cols]
    return cols


def fmt(v) -> str:
    if v is None or (isinstance(v, float) and v != v):  # missing (None, NaN): an empty cell
        return ""
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:,.2f}"
    return str(v)


# --- terminal tables ----------------------------------------------------------------------------


def new_table(title: str | None = None, caption: str | None = None):
    """The one way to make a terminal table: a rich Table that never cuts data.

    Cells wrap at spaces and fold long words (never '…'); a header word is never split. Columns made
    with ``whole=True`` (by default the right-justified, numeric ones; pass it for model names) keep
    every word whole, so a value and its interval wrap onto two lines of one cell. When the table is
    wider than the terminal its columns are narrowed within those limits, and when even that does
    not fit, each row is printed as a block of 'header  value' lines. The title and caption use the
    whole width. On a pipe the CLI's console is wide, so tables print at their natural width.
    """
    from vrec.report.fitted_table import FittedTable  # rich, imported when a table is made

    return FittedTable(title=title, caption=caption)


def results_table(result, title: str | None = None):
    """A rich Table of a SearchResult."""
    t = result.table
    table = new_table(title or f"{result.kind} query: {rich_text(result.query)}  [dim]({rich_text(result.model)})[/dim]")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    if "probability" in t.columns:
        table.add_column("match p", justify="right")
    if "found_by" in t.columns:  # keyword and hybrid search: the leg that found it
        table.add_column("found by")
    table.add_column("id")
    if "photo" in t.columns:  # products of several photos: the one that matched best
        table.add_column("best photo")
    cols = display_columns(t)
    for c in cols:
        table.add_column(rich_text(c))
    for _, r in t.iterrows():
        row = [str(r["rank"]), f"{r['score']:.3f}"]
        if "probability" in t.columns:
            row.append(f"{r['probability']:.3f}")
        if "found_by" in t.columns:
            row.append(rich_text(r["found_by"]))
        row.append(rich_text(r["id"]))
        if "photo" in t.columns:
            row.append(rich_text(f"{r['photo']} of {r['photos']}" if "photos" in t.columns else r["photo"]))
        row += [rich_text(fmt(r[c])) for c in cols]
        table.add_row(*row)
    return table


# --- CSV ------------------------------------------------------------------------------------------

def result_json(result) -> str:
    return json.dumps({"query": result.query, "kind": result.kind, "model": result.model,
                       "results": to_records(result.table), "notes": result.notes}, indent=2)


# --- compare ----------------------------------------------------------------------------------

def compare_tables(c) -> list:
    """Rich renderables: one side-by-side table per query, then the summary."""
    out = []
    for q in c.queries:
        head = (f"[bold]{rich_text(q.query)}[/bold]  {rich_text(q.title)}"
                + (f"  [dim]{rich_text(c.label)}={rich_text(q.label)}[/dim]" if q.label else ""))
        t = new_table(head + f"   overlap@{c.k}: {q.overlap:.2f}", caption="[yellow]●[/yellow] = neighbour found by both models")
        t.add_column("#", justify="right")
        for side in (q.left, q.right):
            t.add_column(rich_text(side.model))
            if c.label:
                t.add_column(rich_text(c.label))
            t.add_column("score", justify="right")
        for i in range(max(len(q.left.table), len(q.right.table))):
            cells = [str(i + 1)]
            for side in (q.left, q.right):
                if i < len(side.table):
                    r = side.table.iloc[i]
                    mark = "[yellow]● [/yellow]" if r["common"] else ""
                    cells.append(mark + rich_text(r["title"]))
                    if c.label:
                        same = q.label is not None and str(r[c.label]) == q.label
                        cells.append(("[green]" if same else "") + rich_text(fmt(r[c.label])) + ("[/green]" if same else ""))
                    cells.append(f"{r['score']:.3f}")
                else:
                    cells += [""] * (3 if c.label else 2)
            t.add_row(*cells)
        out.append(t)
    if c.summary:
        out.append(summary_table(c))
    return out


def rich_text(s) -> str:
    from rich.markup import escape

    return escape(str(s))


def summary_table(c):
    s = c.summary
    what = f"{s.items} items" + (" (a seeded sample)" if s.sampled else "")
    t = new_table(f"Catalog summary over {what}: mean overlap@{s.k} between {rich_text(c.left)} and "
                  f"{rich_text(c.right)} = {s.mean_overlap:.2f}")
    if s.label:
        t.add_column(rich_text(s.label))
        t.add_column("items", justify="right")
        t.add_column(f"{rich_text(c.left)} agreement@{s.k}", justify="right")
        t.add_column(f"{rich_text(c.right)} agreement@{s.k}", justify="right")
        t.add_row("[bold]all[/bold]", str(s.labelled if s.labelled is not None else s.items),
                  figure(s.left_agreement, None, None)[0], figure(s.right_agreement, None, None)[0])
        for _, r in s.per_label.head(25).iterrows():
            t.add_row(rich_text(r[s.label]), str(r["items"]), f"{r['left']:.3f}", f"{r['right']:.3f}")
        if len(s.per_label) > 25:
            t.add_row(f"... {len(s.per_label) - 25} more values", "", "", "")
        if s.labelled is not None and s.labelled < s.items:
            t.caption = (f"agreement over the {s.labelled} items whose {rich_text(s.label)} another item shares; "
                         f"the other {s.items - s.labelled} are left out (as in vrec eval)")
    else:
        t.add_column("note")
        t.add_row("add --label COLUMN to see which model groups items by that label")
    return t


# --- eval -------------------------------------------------------------------------------------

METRIC_NAMES = {"precision": "precision@k", "recall": "recall@k", "map": "mAP@k", "ndcg": "nDCG@k", "mrr": "MRR",
                "accuracy": "accuracy", "hit": "hit@k",
                "R": "R@k", "P": "P@k",  # the published protocol's metrics, named as the leaderboard names them
                "coverage": "coverage@k", "gini": "in-degree Gini@k", "diversity": "intra-list distance@k",
                "distinct": "distinct values per list@k"}  # beyond accuracy (vrec.experiments.beyond)
TASK_NAMES = {"image": "img→img", "text": "text→img", "zeroshot": "zero-shot", "label": "label→img",
              "photo": "photo→product", "beyond": "beyond accuracy", "interactions": "interactions"}


def figure(value, low, high, sep: str = "–", signed: bool = False) -> tuple[str, str]:
    """(value, interval) as text rounded alike (3 decimals); ('—', '') when there is no figure (NaN)."""
    f = "{:+.3f}" if signed else "{:.3f}"
    if value is None or value != value:
        return "—", ""
    if low is None or high is None or low != low or high != high:
        return f.format(value), ""
    return f.format(value), f.format(low) + sep + f.format(high)


def metric_label(task: str, label: str, metric: str, k) -> str:
    name = METRIC_NAMES[metric].replace("@k", f"@{int(k)}" if k == k and k is not None else "")
    return f"{TASK_NAMES[task]} {label}: {name}"


def eval_table(ev):
    """Rich table: one row per metric, one column per model (value and 95% interval)."""
    t = new_table(f"Evaluation on {ev.items} items (value, 95% bootstrap interval)")
    t.add_column("task", whole=True)
    t.add_column("label")
    t.add_column("metric", whole=True)
    for m in ev.models:
        t.add_column(rich_text(m), justify="right")
    if len(ev.models) == 2:
        t.add_column(f"{rich_text(ev.models[0])} − {rich_text(ev.models[1])}", justify="right")
    df = ev.table()
    comps = {(c["task"], c["label"], c["metric"], c["k"]): c for c in ev.comparisons}
    for (task, label, metric, k), grp in df.groupby(["task", "label", "metric", "k"], dropna=False, sort=False):
        cells = [TASK_NAMES[task], rich_text(label), METRIC_NAMES[metric].replace("@k", f"@{int(k)}" if k == k else "")]
        by = grp.set_index("model")
        for m in ev.models:
            v, ci = figure(*by.loc[m, ["value", "ci_low", "ci_high"]]) if m in by.index else ("—", "")
            cells.append(v + (f" [dim]{ci}[/dim]" if ci else ""))
        if len(ev.models) == 2:
            c = comps.get((task, label, metric, None if k != k else int(k)))
            d, ci = ("", "") if c is None else figure(c["difference"], *c["ci"], signed=True)
            bold = c is not None and c["excludes_zero"]
            cells.append((f"[bold]{d}[/bold]" if bold else d) + (f" [dim]{ci}[/dim]" if ci else ""))
        t.add_row(*cells)
    return t


def scoring_table(ev):
    """Rich table of the paired differences between product scorings (vrec eval --query-photos), or None."""
    if not ev.scoring_comparisons:
        return None
    t = new_table("Product scorings compared photo by photo (difference, 95% paired bootstrap interval)")
    for c in ("model", "scorings", "metric", "difference", "better"):
        t.add_column(c, justify="right" if c == "difference" else "left", whole=c != "model")
    for c in ev.scoring_comparisons:
        d, ci = figure(c["difference"], *c["ci"], signed=True)
        name = METRIC_NAMES[c["metric"]].replace("@k", f"@{int(c['k'])}" if c["k"] is not None else "")
        better = c["winner"] if c["excludes_zero"] else "no real difference"
        t.add_row(rich_text(c["model"]), rich_text(c["label"]), name,
                  (f"[bold]{d}[/bold]" if c["excludes_zero"] else d) + f" [dim]{ci}[/dim]", better)
    return t


# --- tags and style maps ----------------------------------------------------------------------


def tags_table(result, catalog, limit: int = 30):
    t = new_table(f"Zero-shot tags (match probability ≥ {result.threshold}, at most {result.top} per group)")
    t.add_column("id")
    for c in display_columns(catalog)[:1]:
        t.add_column(rich_text(c))
    t.add_column("tags (probability)")
    merged = result.table.merge(catalog, on="id", how="left", suffixes=("", "_meta"))
    cols = display_columns(catalog)[:1]
    for _, r in merged.head(limit).iterrows():
        pairs = ", ".join(f"{a} ({b})" for a, b in zip(r["tags"].split(", "), r["tag_probabilities"].split(", "))) if r["tags"] else "—"
        t.add_row(rich_text(r["id"]), *[rich_text(fmt(r[c])) for c in cols], rich_text(pairs))
    if len(merged) > limit:
        t.caption = f"... {len(merged) - limit} more items (all are saved; see --csv)"
    return t


def tag_counts_table(result):
    t = new_table("Tag counts")
    for c in ("group", "tag", "items"):
        t.add_column(c, justify="right" if c == "items" else "left")
    counts = result.long.groupby(["group", "tag"]).size().reset_index(name="n").sort_values(["group", "n"], ascending=[True, False])
    for _, r in counts.iterrows():
        t.add_row(rich_text(r["group"]), rich_text(r["tag"]), str(r["n"]))
    return t


def map_table(sm):
    t = new_table(f"{sm.k} style clusters ({rich_text(sm.criterion)})")
    t.add_column("#", justify="right")
    t.add_column("name")
    t.add_column("items", justify="right")
    if sm.label:
        t.add_column(f"{rich_text(sm.label)} mix")
    t.add_column("price min / median / max", justify="right")
    t.add_column("representatives")
    for c in sm.clusters:
        row = [str(c.id), rich_text(c.name), str(c.size)]
        if sm.label:
            row.append(rich_text(", ".join(f"{a} {b}" for a, b in c.label_mix)))
        row.append("—" if c.price is None else f"{c.price[0]:g} / {c.price[1]:g} / {c.price[2]:g}")
        row.append(rich_text(", ".join(c.representatives[:3])))
        t.add_row(*row)
    return t


def gaps_tables(gap_list, over, threshold: float, min_items: int):
    out = []
    for title, rows in ((f"Possible gaps: concepts fewer than {min_items} items match (p ≥ {threshold})", gap_list),
                        ("Over-served concepts: matched by the largest share of the catalog", over)):
        t = new_table(title)
        for c in ("group", "concept", "items ≥ threshold", "best p", "closest items"):
            t.add_column(c, justify="right" if c in ("items ≥ threshold", "best p") else "left")
        for g in rows[:25]:
            t.add_row(rich_text(g.group), rich_text(g.concept), str(g.items_above), f"{g.best_probability:.3f}", rich_text(", ".join(g.closest)))
        if not rows:
            t.add_row("—", "none", "", "", "")
        out.append(t)
    return out




# --- near-duplicates ----------------------------------------------------------------------------

def dupes_table(result, limit: int | None = None):
    """A rich Table of a DupesResult (vrec.search.dupes), its first ``limit`` pairs."""
    t = result.table
    what = "photos repeated within a product" if result.scope == "photos" else "products sharing a photo"
    shown = t if limit is None else t.head(limit)
    table = new_table(f"{len(t)} pair{'' if len(t) == 1 else 's'} of {what} (cosine ≥ {result.threshold:g} or the same bytes)  "
                      f"[dim]({rich_text(result.model)})[/dim]",
                      caption=f"... {len(t) - len(shown)} more pairs (--limit, or --format csv for all)"
                      if len(shown) < len(t) else None)
    cols = [c for c in t.columns if c not in ("photo_id_a", "photo_id_b")]
    for c in cols:
        table.add_column(rich_text(c), justify="right" if c in ("score",) else "left")
    for _, r in shown.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append("yes" if c == "identical" and v else "" if c == "identical" else
                         f"{v:.4f}" if c == "score" else rich_text(fmt(v)))
        table.add_row(*cells)
    return table


def calibration_table(cal: dict):
    """Precision and recall of a DupesResult's threshold on labelled pairs, and the best-F1 threshold."""
    table = new_table(f"Calibration on {rich_text(cal['file'])}: {cal['pairs']} labelled pairs, "
                      f"{cal['duplicates']} duplicate{'' if cal['duplicates'] == 1 else 's'}")
    for c in ("threshold", "precision", "recall", "F1", "found", "false alarms", "missed"):
        table.add_column(c, justify="right" if c != "threshold" else "left")

    def row(label, f):
        return [label, *(fmt(float(f[k])) if f[k] == f[k] else "—" for k in ("precision", "recall", "f1")),
                str(f["tp"]), str(f["fp"]), str(f["fn"])]

    table.add_row(*row(f"{cal['threshold']:g} (used)", cal))
    if cal.get("best"):
        table.add_row(*row(f"{cal['best']['threshold']:g} (best F1)", cal["best"]))
    return table


def dupes_json(result, limit: int | None = None) -> str:
    from vrec.base.records import json_safe

    t = result.table if limit is None else result.table.head(limit)
    return json.dumps(json_safe({"model": result.model, "scope": result.scope, "threshold": result.threshold,
                                 "threshold_source": result.threshold_source, "photos": result.photos,
                                 "products": result.products, "total": len(result.table),
                                 "pairs": to_records(t), "calibration": result.calibration,
                                 "notes": result.notes}), indent=2)


# --- collections ----------------------------------------------------------------------------------

COLLECTION_COLUMNS = ["rank", "id", "title", "pinned", "note"]  # what a CMS takes from an export


def collection_csv(table) -> str:
    """A collection's export table as CSV for a CMS (rank, id, title, pinned, note), cells escaped."""
    from vrec.base.records import csv_safe

    return csv_safe(table[COLLECTION_COLUMNS]).to_csv(index=False)


def collection_dict(collection, table=None) -> dict:
    """A collection as plain JSON-ready data; with its export ``table``, items carry their rank and title."""
    from dataclasses import asdict

    d = asdict(collection)
    if table is not None:
        extra = {r["id"]: r for r in to_records(table[COLLECTION_COLUMNS])}
        d["items"] = [{"rank": extra[i["id"]]["rank"], "id": i["id"], "title": extra[i["id"]]["title"],
                       "pinned": i["pinned"], "note": i["note"], "added": i["added"]} for i in d["items"]]
    return d


def collection_json(collection, table) -> str:
    return json.dumps(collection_dict(collection, table), indent=2, ensure_ascii=False) + "\n"


def collections_table(collections):
    """The collections of a store: name, items, pinned, query, saved, by, version."""
    t = new_table("Collections")
    for c in ("name", "items", "pinned", "query", "saved", "by", "version"):
        t.add_column(c, justify="right" if c in ("items", "pinned", "version") else "left")
    for c in collections:
        t.add_row(rich_text(c.name), str(len(c.items)), str(sum(i.pinned for i in c.items)),
                  rich_text(c.query.label()), rich_text(c.updated), rich_text(c.by), str(c.version))
    return t


def collection_table(collection, table):
    """One collection's items: rank, pinned, id, title, note."""
    t = new_table(f"Collection {rich_text(collection.name)}  [dim]({rich_text(collection.query.label())}, "
                  f"{rich_text(collection.query.model)}, version {collection.version})[/dim]")
    for c in ("#", "pinned", "id", "title", "note"):
        t.add_column(c, justify="right" if c == "#" else "left")
    for _, r in table.iterrows():
        t.add_row(str(r["rank"]), "yes" if r["pinned"] else "", rich_text(r["id"]), rich_text(fmt(r["title"])),
                  rich_text(r["note"]))
    return t
