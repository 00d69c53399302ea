"""The many-model evaluation (``vrec eval --models a,b,c,...``) as tables: one ranked table (one row
per figure, one column per model in the order of their record, the real differences named) and
every pair's paired comparison with its Holm-adjusted p-value. Plain cells for the Markdown, HTML
and JSON reports; rich tables for the terminal."""
from __future__ import annotations

from vrec.report.render import METRIC_NAMES, TASK_NAMES, figure, new_table, rich_text


def _figure_name(f: dict) -> tuple[str, str, str]:
    k = f["k"]
    name = METRIC_NAMES[f["metric"]].replace("@k", f"@{int(k)}" if k is not None and k == k else "")
    return TASK_NAMES[f["task"]], str(f["label"]), name


def _key(f: dict) -> tuple:
    return f["task"], f["label"], f["metric"], f["k"]


def _real(pairs: list[dict], f: dict) -> str:
    real = [f"{p['first']} > {p['second']}" for p in pairs if _key(p) == _key(f) and p["real"]]
    return ", ".join(real) or "none"


def ranked_rows(ranking) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the ranked table: value and rank of each model, and the real differences."""
    header = ["task", "label", "metric"] + [f"{m}" for m in ranking.order] + ["real differences (Holm, 5%)"]
    rows = []
    for f in ranking.figures:
        by = {r["model"]: r for r in f["ranking"]}
        cells = [f"{figure(by[m]['value'], None, None)[0]} (#{by[m]['rank']})" if m in by else "—"
                 for m in ranking.order]
        rows.append(list(_figure_name(f)) + cells + [_real(ranking.pairs, f)])
    return header, rows


def pair_rows(ranking) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of every pair of every figure: better − worse, interval, p, Holm p, verdict."""
    header = ["task", "label", "metric", "pair", "difference", "95% interval", "p", "Holm p", "verdict"]
    rows = []
    for p in ranking.pairs:
        d, ci = figure(p["difference"], *p["ci"], sep=", ", signed=True)
        rows.append(list(_figure_name(p)) + [f"{p['first']} − {p['second']}", d, f"[{ci}]" if ci else "",
                                             f"{p['p']:.3f}", f"{p['p_holm']:.3f}",
                                             "real" if p["real"] else "within noise"])
    return header, rows


def ranking_tables(ev) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The many-model tables as (title, caption, header, rows), for the report writers; [] otherwise."""
    if ev.ranking is None:
        return []
    r = ev.ranking
    record = "; ".join(f"{m}: {r.record[m]['wins']} real wins, {r.record[m]['losses']} real losses"
                       for m in r.order)
    return [("Models ranked", f"{r.verdict} Each cell: value (rank on that figure). Record: {record}.",
             *ranked_rows(r)),
            ("Every pair", "Paired difference over the same queries (better − worse), 95% paired bootstrap interval, "
             "bootstrap p-value, and the p-value adjusted with Holm's method over the pairs of the same figure; "
             "'real' when the adjusted p is below 0.05.", *pair_rows(r))]


def ranking_rich(ev) -> list:
    """Rich tables for the terminal: the ranked table and the pairs."""
    if ev.ranking is None:
        return []
    tables = []
    for title, caption, header, rows in ranking_tables(ev):
        t = new_table(title, rich_text(caption))
        for i, h in enumerate(header):
            t.add_column(rich_text(h), justify="right" if 3 <= i < len(header) - 1 else "left",
                         whole=i < 3 or h in ("pair", "verdict"))
        for row in rows:
            t.add_row(*(rich_text(c) for c in row))
        tables.append(t)
    return tables
