"""The terminal table of ``vrec eval --search-modes``: vector, keyword and hybrid text search side by
side, with the paired differences that say whether hybrid search is really better."""
from __future__ import annotations

from vrec.report.render import METRIC_NAMES, figure, new_table, rich_text

TITLE = "Text search modes on the same queries"
CAPTION = ("Vector, keyword and hybrid search (value, 95% bootstrap interval); differences paired query by "
           "query, bold where the interval excludes 0.")


def _grid(ev, value, difference):
    """(header, rows) of the search modes: ``value(figure)`` and ``difference(comparison)`` make cells."""
    legs = list(dict.fromkeys(r["mode"] for r in ev.search_modes))
    pairs = list(dict.fromkeys((c["first"], c["second"]) for c in ev.mode_comparisons))
    figures, comps = {}, {}
    for r in ev.search_modes:
        figures.setdefault((r["model"], r["task"], r["label"], r["metric"], r["k"]), {})[r["mode"]] = r
    for c in ev.mode_comparisons:
        comps[(c["model"], c["task"], c["label"], c["metric"], c["k"], c["first"], c["second"])] = c
    rows = []
    for key, by_leg in figures.items():
        model, _, label, metric, k = key
        n = next(iter(by_leg.values()))["queries"]
        rows.append([model, f"{label} ({n})", METRIC_NAMES[metric].replace("@k", f"@{int(k)}" if k is not None else "")]
                    + [value(by_leg.get(leg)) for leg in legs] + [difference(comps.get((*key, a, b))) for a, b in pairs])
    return ["model", "queries", "metric", *legs, *(f"{a} − {b}" for a, b in pairs)], rows


def search_modes_table(ev):
    """A rich Table of ``ev.search_modes`` (one row per model, query set and metric), or None."""
    if not ev.search_modes:
        return None

    def value(r) -> str:
        v, ci = figure(r["value"], r["ci_low"], r["ci_high"]) if r else ("—", "")
        return v + (f" [dim]{ci}[/dim]" if ci else "")

    def difference(c) -> str:
        d, ci = ("", "") if c is None else figure(c["difference"], *c["ci"], signed=True)
        return (f"[bold]{d}[/bold]" if c is not None and c["excludes_zero"] else d) + (f" [dim]{ci}[/dim]" if ci else "")

    header, rows = _grid(ev, value, difference)
    t = new_table(f"{TITLE} ({CAPTION[0].lower()}{CAPTION[1:-1]})")
    for n, c in enumerate(header):
        t.add_column(rich_text(c), justify="right" if n > 2 else "left", whole=c == "metric")
    for row in rows:
        t.add_row(*[rich_text(c) if n < 2 else c for n, c in enumerate(row)])
    return t


def search_modes_report(ev, strong=str) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The same as a report's plain table, (title, caption, header, rows), or none; ``strong`` marks the
    differences whose interval excludes zero (the report's bold)."""
    if not ev.search_modes:
        return []

    def value(r) -> str:
        v, ci = figure(r["value"], r["ci_low"], r["ci_high"], sep=", ") if r else ("—", "")
        return v + (f" [{ci}]" if ci else "")

    def difference(c) -> str:
        if c is None:
            return ""
        d, ci = figure(c["difference"], *c["ci"], sep=", ", signed=True)
        return strong(f"{d} [{ci}]") if c["excludes_zero"] else f"{d} [{ci}]"

    header, rows = _grid(ev, value, difference)
    return [(TITLE, CAPTION, header, rows)]
