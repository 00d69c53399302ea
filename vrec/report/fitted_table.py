"""The terminal table every command prints (``render.new_table``): a rich Table that never cuts data.

When the natural widths do not fit the terminal, columns are narrowed down to floors (a header word
and, for ``whole`` columns, every word stay whole; other text folds down to ``FOLD_MIN``
characters); when even the floors do not fit, each row is printed as a block of 'header  value'
lines. Widths are measured with rich's public API only (``Measurement.get`` of each cell).
"""
from __future__ import annotations

from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

FOLD_MIN = 10  # a text column may be folded down to this many characters before the table stacks instead


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
        avail = options.max_width - self.extra_width()
        wide = options.update_width(max(options.max_width, 1 << 16))
        pads = [self.padding_width(i) for i in range(len(self.columns))]
        natural = [self.natural_width(console, wide, c) for c in self.columns]
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

    # widths, from the table's public settings (the same arithmetic as rich's own layout)
    def extra_width(self) -> int:
        """Characters the borders take: the outer edges and one rule between columns."""
        if not self.box:
            return 0
        return (2 if self.show_edge else 0) + len(self.columns) - 1

    def padding_width(self, i: int) -> int:
        """The padding around column ``i``'s cells (none at the outer edges without pad_edge)."""
        _, right, _, left = self.padding
        if self.collapse_padding:
            left, right = 0, abs(left - right)
        if not self.pad_edge:
            left = 0 if i == 0 else left
            right = 0 if i == len(self.columns) - 1 else right
        return left + right

    def natural_width(self, console, options, column) -> int:
        """The width of the column's widest cell (header included), without padding."""
        cells = [column.header, *column.cells] if self.show_header else list(column.cells)
        return max((Measurement.get(console, options, c).maximum for c in cells), default=0)
