"""Results as a person reads them in a terminal: tables that never cut data, and JSON.

Every table comes from :func:`new_table`, so wrapping, folding and stacking behave the same in
every command. HTML pages live in ``vrec.pages``.
"""
from __future__ import annotations

import json
import re
from typing import Sequence

from .records import to_records

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


# --- terminal tables ----------------------------------------------------------------------------

FOLD_MIN = 10  # a text column may be folded down to this many characters before the table stacks instead
_TABLE_CLASS = None


def new_table(title: str | None = None, caption: str | None = None):
    """The one way to make a terminal table: a rich Table that never cuts data.

    Cells wrap at spaces and fold long words (never '…'); a header word is never split. Columns made
    with ``whole=True`` (by default the right-justified, numeric ones; pass it for model names) keep
    every word whole, so a value and its interval wrap onto two lines of one cell. When the table is
    wider than the terminal its columns are narrowed within those limits, and when even that does
    not fit, each row is printed as a block of 'header  value' lines. The title and caption use the
    whole width. On a pipe the CLI's console is wide, so tables print at their natural width.
    """
    global _TABLE_CLASS
    if _TABLE_CLASS is None:
        _TABLE_CLASS = _fitted_table_class()
    return _TABLE_CLASS(title=title, caption=caption)


def _fitted_table_class():
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    def min_width(console, options, renderable) -> int:
        return Measurement.get(console, options, renderable).minimum

    class FittedTable(Table):
        def __init__(self, **kw):
            super().__init__(**kw)
            self._whole: list[bool] = []

        def add_column(self, header="", *, whole: bool | None = None, **kw):
            kw.pop("no_wrap", None)
            kw["overflow"] = "fold"
            super().add_column(header, **kw)
            self._whole.append(kw.get("justify") == "right" if whole is None else whole)

        def __rich_console__(self, console, options):
            title, caption = self.title, self.caption
            if title:
                yield self._annotation(console, title, "table.title")
            if not self.columns:
                return
            saved = [c.width for c in self.columns], self.show_edge, self.pad_edge
            widths = self._fit(console, options)
            if widths == "stack":  # a table without its outer frame may still fit
                self.show_edge = self.pad_edge = False
                widths = self._fit(console, options)
            try:
                self.title = self.caption = None
                if widths == "stack":
                    yield from self._stacked(console, options)
                else:
                    for c, w in zip(self.columns, widths or [None] * len(self.columns)):
                        c.width = w
                    yield from super().__rich_console__(console, options)
            finally:
                for c, w in zip(self.columns, saved[0]):
                    c.width = w
                self.title, self.caption, self.show_edge, self.pad_edge = title, caption, *saved[1:]
            if caption:
                yield self._annotation(console, caption, "table.caption")

        def _annotation(self, console, text, style):
            return console.render_str(text, style=style, highlight=False) if isinstance(text, str) else text

        def _fit(self, console, options):
            """Column widths (without padding) that fit, None for the natural ones, or 'stack'."""
            avail = options.max_width - self._extra_width
            wide = options.update_width(max(options.max_width, 1 << 16))
            pads = [self._get_padding_width(i) for i in range(len(self.columns))]
            natural = [self._measure_column(console, wide, c).maximum - p for c, p in zip(self.columns, pads)]
            if sum(natural) + sum(pads) <= avail:
                return None
            floors = []
            for c, whole, nat in zip(self.columns, self._whole, natural):
                head = min_width(console, wide, c.header) if c.header else 0
                cells = max((min_width(console, wide, x) for x in c.cells), default=0)
                floors.append(min(nat, max(head, cells if whole else min(cells, FOLD_MIN), 1)))
            spare = avail - sum(floors) - sum(pads)
            if spare < 0:
                return "stack"
            # fair shares of the spare room: narrow columns get their natural width, wide ones split the rest
            widths = list(floors)
            wants = [n - f for n, f in zip(natural, floors)]
            order = sorted(range(len(wants)), key=wants.__getitem__)
            for k, i in enumerate(order):
                give = min(wants[i], spare // (len(order) - k))
                widths[i] += give
                spare -= give
            return widths

        def _stacked(self, console, options):
            """Each row as 'header  value' lines, rows separated by a blank line."""
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold", overflow="fold")
            grid.add_column(overflow="fold")
            columns = [list(c.cells) for c in self.columns]
            for r in range(self.row_count):
                if r:
                    grid.add_row("", "")
                for c, cells in zip(self.columns, columns):
                    grid.add_row(c.header if isinstance(c.header, str) else Text(str(c.header)), cells[r])
            yield grid

    return FittedTable


def results_table(result, title: str | None = None):
    """A rich Table of a SearchResult."""
    t = result.table
    table = new_table(title or f"{result.kind} query: {rich_text(result.query)}  [dim]({rich_text(result.model)})[/dim]")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    if "probability" in t.columns:
        table.add_column("match p", justify="right")
    table.add_column("id")
    cols = display_columns(t)
    for c in cols:
        table.add_column(rich_text(c))
    for _, r in t.iterrows():
        row = [str(r["rank"]), f"{r['score']:.3f}"]
        if "probability" in t.columns:
            row.append(f"{r['probability']:.3f}")
        row.append(rich_text(r["id"]))
        row += [rich_text(fmt(r[c])) for c in cols]
        table.add_row(*row)
    return table


# --- CSV ------------------------------------------------------------------------------------------

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's CSV injection list):
# metadata such as '=HYPERLINK(...)' or '@SUM(...)' from a supplier's feed would run on opening.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_RAW_ENV = "VREC_CSV_RAW"  # set to 1: write every cell as it is
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value):
    """A text cell a spreadsheet would run as a formula, with a leading "'" (shown, never run);
    numbers, plain negative numbers written as text ('-0.5') and other cells as they are."""
    if isinstance(value, str) and value[:1] in FORMULA_START and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_safe(df):
    """The table as every CSV vrec writes it: text cells and column names a spreadsheet would run
    as formulas are escaped (see :func:`csv_cell`), unless VREC_CSV_RAW=1 asks for raw values.
    Numeric columns are never touched."""
    import os

    if os.environ.get(CSV_RAW_ENV, "").strip() not in ("", "0"):
        return df
    from pandas.api.types import is_object_dtype, is_string_dtype

    out = df.copy()
    for i, dtype in enumerate(df.dtypes):
        if is_object_dtype(dtype) or is_string_dtype(dtype):
            out.isetitem(i, df.iloc[:, i].map(csv_cell))
    out.columns = [csv_cell(c) for c in df.columns]
    return out


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
                "accuracy": "accuracy",
                "R": "R@k", "P": "P@k"}  # the published protocol's metrics, named as the leaderboard names them
TASK_NAMES = {"image": "img→img", "text": "text→img", "zeroshot": "zero-shot", "label": "label→img"}


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


