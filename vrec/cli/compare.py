"""``vrec compare``."""
from __future__ import annotations

import typer

from vrec.cli.common import DeviceOpt, FilterOpt, StoreOpt, app, check_format, err, out


@app.command()
def compare(
    items: list[str] | None = typer.Argument(None, help="Catalog item ids or photo paths \\[default: a sample]."),
    left: str = typer.Option("cnn", "--left", help="Model shown on the left."),
    right: str = typer.Option("siglip", "--right", help="Model shown on the right."),
    k: int = typer.Option(5, "--k", "-k", help="Neighbours per model (at most the other items in the catalog; "
                          "a larger k is lowered, with a note)."),
    sample: int = typer.Option(5, "--sample", help="Without ITEMs: how many items to pick across the catalog "
                               "(0 to 200; 0 = only the summary)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the sample (same seed, same items; 0 or more)."),
    label: str | None = typer.Option(None, "--label", help="Metadata column (e.g. category, articleType): "
                                        "shown beside neighbours, and each model's agreement with it is measured."),
    filters: list[str] | None = FilterOpt,
    summary: bool = typer.Option(False, "--summary", help="Only the catalog-wide summary, no per-item tables."),
    html: str | None = typer.Option(None, "--html", help="Also write a self-contained HTML page."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    store: str | None = StoreOpt,
    device: str = DeviceOpt,
) -> None:
    """Show two models' nearest neighbours side by side (CNN vs SigLIP by default).

    Neighbours found by both are marked. Without ITEMs, a sample spread across the catalog is shown
    and followed by a catalog summary: mean overlap@k between the models and, with --label, each
    model's label agreement@k (share of neighbours sharing the query's label), per label value, and
    what each model does beyond accuracy: catalog coverage@k, in-degree Gini@k with the most
    over-recommended items, intra-list diversity@k (in the left model's vectors).
    Items without a label value, or with one no other item has, are left out of label agreement
    (as in vrec eval); a note says how many. With --filter, both models' neighbours (and the sample
    and summary) are among the matching items only.
    """
    import json

    from vrec.report import pages
    from vrec.report import render as r
    from vrec.report.beyond_report import compare_beyond_tables
    from vrec.search.compare import compare as run
    from vrec.search.compare import to_dict

    check_format(fmt, ("table", "json"))
    result = run(items or (), left=left, right=right, k=k, sample=0 if summary else sample, seed=seed, label=label,
                 store=store, summary=True if summary else None, device=device, filters=filters or ())
    for note in result.notes:
        err.print(f"[yellow]Note:[/yellow] {note}")
    if fmt == "json":
        print(json.dumps(to_dict(result), indent=2))
    else:
        for renderable in r.compare_tables(result) + compare_beyond_tables(result):
            out.print(renderable)
    if html:
        pages.write_page(html, f"vrec compare: {left} vs {right}", pages.compare_html(result))
        err.print(f"wrote {html}")
