"""``vrec search-text`` and ``vrec search-image``."""
from __future__ import annotations

import sys

import typer

from vrec.cli.common import (
    START,
    CollapseOpt,
    DeviceOpt,
    FilterOpt,
    FormatOpt,
    ProductScoreOpt,
    StoreOpt,
    WeightsOpt,
    app,
    check_format,
    err,
    out,
    request_quick_exit,
)

SCORES_HELP = ("Scores: 'score' is the cosine similarity of the query and item vectors (1 = identical direction);"
               " for text queries on SigLIP models, 'match p' is SigLIP's own probability that the text describes"
               " the photo, sigmoid(logit_scale x cosine + logit_bias), comparable across queries.")


def render(result, fmt: str, html_path: str | None, store) -> None:
    from vrec.base.records import csv_safe
    from vrec.report import pages
    from vrec.report import render as r
    from vrec.store.store import Store

    if html_path:  # first: an unwritable page is an error before any result is printed
        pages.write_page(html_path, f"vrec {result.kind} search: {result.query}", pages.search_html(result, Store(store).root))
    for note in result.notes:
        err.print(f"[yellow]Note:[/yellow] {note}")
    if fmt == "json":
        print(r.result_json(result))
    elif fmt == "csv":
        print(csv_safe(result.table).to_csv(index=False).rstrip("\n"))
    else:
        out.print(r.results_table(result))
    if html_path:
        err.print(f"wrote {html_path}")


@app.command("search-text", help="Find catalog items that match a text, e.g. \"minimalist leather tote\".\n\n" + SCORES_HELP
             + "\n\nThe text goes through the model's text tower exported to ONNX (made once by the first text query, "
               "'vrec index' or 'vrec models download'), so no torch is imported; VREC_TEXT_ONNX=0 uses torch instead.",
             short_help="Find catalog items that match a text, e.g. \"minimalist leather tote\".")
def search_text(
    query: str = typer.Argument(..., help="What to look for, in plain words."),
    k: int = typer.Option(10, "--k", "-k", help="Number of results (at least 1; beyond the catalog, all items)."),
    model: str = typer.Option("siglip", "--model", "-m", help="A model with a text tower (siglip, tiny-siglip, open_clip:...); "
                               "a CNN searches by keyword alone (after 'vrec index')."),
    template: str = typer.Option("a photo of {}.", "--template", help="Prompt template; {} is replaced by the query "
                                  "(required; '{}' alone uses the query as typed)."),
    filter: list[str] | None = FilterOpt,
    fmt: str = FormatOpt,
    html: str | None = typer.Option(None, "--html", help="Also write a self-contained HTML page of the results."),
    store: str | None = StoreOpt,
    weights: str | None = WeightsOpt,
    device: str = DeviceOpt,
    timings: bool = typer.Option(False, "--timings", help="Print where the time went (to stderr)."),
    product_score: str | None = ProductScoreOpt,
    collapse: str | None = CollapseOpt,
    mode: str | None = typer.Option(None, "--mode", help="vector (the model's text tower), keyword (the catalog's "
                                    "words: titles, brands, ids...) or hybrid (both, fused) \\[default: hybrid when "
                                    "'vrec index' built the keyword index, else vector]."),
    keyword_weight: float | None = typer.Option(None, "--keyword-weight", help="Hybrid: blend the two legs' "
                                                "scores as (1-w) vector + w keyword, w from 0 to 1 \\[default: "
                                                "reciprocal rank fusion]."),
) -> None:
    import time

    t0 = time.perf_counter()
    from vrec.search.hybrid import search_text as run

    t1 = time.perf_counter()
    check_format(fmt)
    result = run(query, k=k, model=model, store=store, mode=mode, keyword_weight=keyword_weight, template=template,
                 filters=filter or (), weights=weights, device=device, product_score=product_score,
                 collapse=collapse)
    t2 = time.perf_counter()
    render(result, fmt, html, store)
    if timings:
        phases = {"start-up": t0 - START, "imports": t1 - t0, **result.timings, "render": time.perf_counter() - t2}
        err.print("timings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in phases.items()), highlight=False)
        imported = "torch imported" if "torch" in sys.modules else "torch not imported"
        err.print(f"({imported}; the text tower's phases, from checks to the encoding, ran on a second thread "
                  "alongside 'store'; 'waiting for the text tower' is what was left of them after it)", highlight=False)
    request_quick_exit()


@app.command("search-image", help="Find items similar to a photo or to a catalog item (by id); optionally steer "
             "with text: --plus handbag --minus red.\n\nScore: cosine similarity of the query and item vectors.",
             short_help="Find items similar to a photo or a catalog item (\"find similar\").")
def search_image(
    query: str = typer.Argument(..., help="A photo file, or a catalog item id (the item itself is left out)."),
    k: int = typer.Option(10, "--k", "-k", help="Number of results (at least 1; beyond the catalog, all items)."),
    model: str = typer.Option("siglip", "--model", "-m", help="Model whose vectors to search."),
    plus: list[str] | None = typer.Option(None, "--plus", help="Text to add to the query (needs a text tower)."),
    minus: list[str] | None = typer.Option(None, "--minus", help="Text to subtract from the query."),
    weight: float = typer.Option(1.0, "--weight", help="Weight of each --plus/--minus text vector against the "
                                 "unit image vector, 0 to 10."),
    filter: list[str] | None = FilterOpt,
    fmt: str = FormatOpt,
    html: str | None = typer.Option(None, "--html", help="Also write a self-contained HTML page of the results."),
    store: str | None = StoreOpt,
    weights: str | None = WeightsOpt,
    device: str = DeviceOpt,
    product_score: str | None = ProductScoreOpt,
    collapse: str | None = CollapseOpt,
    exclude_same_group: bool = typer.Option(False, "--exclude-same-group", help="For a catalog item: leave out "
                                            "its variants (the items sharing its --collapse column, else its "
                                            "item_group_id)."),
) -> None:
    from vrec.search.query import search_image as run

    check_format(fmt)
    result = run(query, k=k, model=model, store=store, filters=filter or (), plus=plus or (), minus=minus or (),
                 weight=weight, weights=weights, device=device, product_score=product_score, collapse=collapse,
                 exclude_same_group=exclude_same_group)
    render(result, fmt, html, store)
    request_quick_exit()
