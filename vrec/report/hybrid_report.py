"""The terminal table of ``vrec eval --search-modes``: vector, keyword and hybrid text search side by
side, with the paired differences that say whether hybrid search is really better."""
from __future__ import annotations

from vrec.report.render import METRIC_NAMES, figure, new_table, rich_text

TASKS = {"text": "text→img", "protocol": "text→img"}


def search_modes_table(ev):
    """A rich Table of ``ev.search_modes`` (one row per model, query set and metric), or None."""
    if not ev.search_modes:
        return None
    legs = list(dict.fromkeys(r["mode"] for r in ev.search_modes))
    pairs = list(dict.fromkeys((c["first"], c["second"]) for c in ev.mode_comparisons))
    t = new_table("Text search modes on the same queries (value, 95% bootstrap interval; differences paired "
                  "query by query, bold where the interval excludes 0)")
    for c in ("model", "queries", "metric"):
        t.add_column(c, whole=c == "metric")
    for leg in legs:
        t.add_column(rich_text(leg), justify="right")
    for a, b in pairs:
        t.add_column(f"{rich_text(a)} − {rich_text(b)}", justify="right")
    figures, comps = {}, {}
    for r in ev.search_modes:
        figures.setdefault((r["model"], r["task"], r["label"], r["metric"], r["k"]), {})[r["mode"]] = r
    for c in ev.mode_comparisons:
        comps[(c["model"], c["task"], c["label"], c["metric"], c["k"], c["first"], c["second"])] = c
    for key, by_leg in figures.items():
        model, task, label, metric, k = key
        n = next(iter(by_leg.values()))["queries"]
        cells = [rich_text(model), f"{rich_text(label)} ({n})",
                 METRIC_NAMES[metric].replace("@k", f"@{int(k)}" if k is not None else "")]
        for leg in legs:
            r = by_leg.get(leg)
            v, ci = figure(r["value"], r["ci_low"], r["ci_high"]) if r else ("—", "")
            cells.append(v + (f" [dim]{ci}[/dim]" if ci else ""))
        for a, b in pairs:
            c = comps.get((*key, a, b))
            d, ci = ("", "") if c is None else figure(c["difference"], *c["ci"], signed=True)
            cells.append((f"[bold]{d}[/bold]" if c is not None and c["excludes_zero"] else d)
                         + (f" [dim]{ci}[/dim]" if ci else ""))
        t.add_row(*cells)
    return t
