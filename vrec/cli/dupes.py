"""``vrec dupes``: near-duplicate photos within products, and products sharing a photo."""
from __future__ import annotations

import typer

from vrec.cli.common import FormatOpt, StoreOpt, app, check_format, err, out, print_notes

TABLE_LIMIT = 50  # pairs a terminal table shows when --limit is not given


@app.command()
def dupes(
    model: str = typer.Option("siglip", "--model", "-m", help="Model whose photo vectors to compare."),
    threshold: float | None = typer.Option(None, "--threshold", help="Cosine at or above which two photos count "
                                           "as the same picture \\[default: measured per model, 0.95 for "
                                           "effnet-lite0; with --pairs, the threshold with the best F1]."),
    scope: str = typer.Option("photos", "--scope", help="photos: a photo repeated within one product; products: "
                              "two products sharing a photo (one row per product pair)."),
    pairs: str | None = typer.Option(None, "--pairs", help="CSV of labelled pairs (columns a, b, duplicate = 1/0 or "
                                     "true/false; photo ids for --scope photos, product ids for products): precision "
                                     "and recall at the threshold, and the threshold with the best F1."),
    fmt: str = FormatOpt,
    limit: int | None = typer.Option(None, "--limit", help="At most this many pairs, best first \\[default: 50 in "
                                     "a table, all in json and csv]."),
    store: str | None = StoreOpt,
) -> None:
    """Find near-duplicate photos: the same picture twice within a product, or shared by two products.

    Two photos are duplicates when their bytes are equal or their cosine is at or above the threshold;
    each photo's 10 nearest neighbours are compared, so a store of millions of photos needs no n x n
    matrix. Pairs come best first: identical bytes, then by score.
    """
    from vrec.base.errors import check_number
    from vrec.base.records import csv_safe
    from vrec.report import render as r
    from vrec.search.dupes import check_scope, find_dupes

    check_format(fmt)
    check_scope(scope)
    if limit is not None:
        check_number("--limit", limit, min=1, integer=True)
    with err.status("looking for duplicates"):
        result = find_dupes(store=store, model=model, threshold=threshold, scope=scope, pairs=pairs)
    notes = list(result.notes)
    if fmt == "table" and result.calibration is None:
        notes.append(f"threshold {result.threshold:g} ({result.threshold_source})")
    print_notes(notes)
    shown = limit if limit is not None else (TABLE_LIMIT if fmt == "table" else None)
    if fmt == "json":
        print(r.dupes_json(result, limit))
    elif fmt == "csv":
        table = result.table if shown is None else result.table.head(shown)
        print(csv_safe(table).to_csv(index=False).rstrip("\n"))
    elif len(result.table):
        out.print(r.dupes_table(result, shown))
    if fmt == "table" and result.calibration is not None:
        out.print(r.calibration_table(result.calibration))
    if not len(result.table):
        err.print(f"no duplicates at threshold {result.threshold:g}", highlight=False)
