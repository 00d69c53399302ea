"""The cross-language protocol's gaps (``vrec eval --language-columns``) as a table: for each model,
how each text figure differs between two languages asked about the same products."""
from __future__ import annotations

from vrec.report.render import METRIC_NAMES, figure, new_table, rich_text


def language_rows(ev) -> tuple[list[str], list[list[str]]]:
    """(header, rows): model, languages, metric, difference, interval, verdict."""
    header = ["model", "languages", "metric", "difference", "95% interval", "verdict"]
    rows = []
    for g in ev.language_gaps:
        d, ci = figure(g["difference"], *g["ci"], sep=", ", signed=True)
        name = METRIC_NAMES[g["metric"]].replace("@k", f"@{int(g['k'])}" if g["k"] is not None else "")
        better = g["first"] if g["difference"] > 0 else g["second"]
        rows.append([g["model"], f"{g['first']} − {g['second']}", name, d, f"[{ci}]" if ci else "",
                     f"{better} queries do better" if g["excludes_zero"] else "no real difference"])
    return header, rows


def language_tables(ev) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The gap table as (title, caption, header, rows) for the report writers; [] without gaps."""
    if not ev.language_gaps:
        return []
    return [("Languages compared", "The same products asked in two languages: paired difference of each text "
             "figure (first language − second) with its 95% paired bootstrap interval.", *language_rows(ev))]


def language_rich(ev) -> list:
    tables = []
    for title, caption, header, rows in language_tables(ev):
        t = new_table(title, rich_text(caption))
        for i, h in enumerate(header):
            t.add_column(h, justify="right" if h in ("difference", "95% interval") else "left", whole=i != 5)
        for row in rows:
            t.add_row(*(rich_text(c) for c in row))
        tables.append(t)
    return tables
