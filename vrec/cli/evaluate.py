"""``vrec eval``, ``vrec export`` and ``vrec neighbours``."""
from __future__ import annotations

import typer

from vrec.cli.common import DeviceOpt, FilterOpt, StoreOpt, app, err, out, print_notes


@app.command("eval")
def eval_(
    models: str = typer.Option("siglip,cnn", "--models", help="Comma-separated embedded models to evaluate."),
    label: list[str] | None = typer.Option(None, "--label", help="Metadata column whose values define relevance "
                                              "(same value = relevant); repeat for several."),
    k: str = typer.Option("1,5,10", "--k", help="Cut-offs, comma-separated; a k above the catalog ranks every item "
                          "(a note says so)."),
    queries: str | None = typer.Option(None, "--queries", help="CSV of text queries: 'query' plus 'relevant_ids' "
                                          "(';'-separated) or 'filter' (e.g. articleType=Watches)."),
    text_template: str | None = typer.Option(None, "--text-template", help="Text queries built from labels, e.g. "
                                                "'a photo of a {baseColour} {articleType}' \\[default: 'a photo of a {LABEL}.']."),
    report: list[str] | None = typer.Option(None, "--report", help="Write a report: FILE.md (with SVG charts), "
                                               "FILE.html or FILE.json; repeatable."),
    text_queries_from: str | None = typer.Option(None, "--text-queries-from", help="Published protocol: each "
                                                    "distinct value of this column (e.g. productDisplayName) is a text "
                                                    "query; relevant = items with that value. R@1, R@10, MRR."),
    label_queries: str | None = typer.Option(None, "--label-queries", help="Published protocol: each value of this "
                                                "label column (e.g. articleType) is a text query; relevant = items with "
                                                "that label. P@1, P@10, MRR."),
    fuse_text: str | None = typer.Option(None, "--fuse-text", help="Protocol documents = normalise((1-w) image + w "
                                            "text of this column), as the benchmark's are."),
    text_weight: float = typer.Option(0.1, "--text-weight", help="w for --fuse-text (0 to 1)."),
    query_photos: str | None = typer.Option(None, "--query-photos", help="CSV of photos not in the catalog and "
                                               "the product each shows (columns photo, product_id): a shopper's "
                                               "photo -> its product, hit@k and MRR."),
    product_score: str = typer.Option("mean", "--product-score", help="How a product of several photos is scored, "
                                         "comma-separated to compare: mean (the mean of its photos), max (its best "
                                         "photo), main (its main photo only)."),
    search_modes: bool = typer.Option(False, "--search-modes", help="Also run the text queries (--queries, "
                                      "--text-queries-from) through keyword and hybrid search (the keyword index of "
                                      "'vrec index'): vector, keyword and hybrid side by side, paired."),
    tune_keyword_weight: bool = typer.Option(False, "--tune-keyword-weight", help="With --search-modes: choose "
                                             "the hybrid blend's keyword weight on half the queries, report it on "
                                             "the other half."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95% intervals (10 to 100000)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the bootstrap (0 or more)."),
    store: str | None = StoreOpt,
    device: str = DeviceOpt,
) -> None:
    """Measure which model retrieves better on your labelled catalog (SigLIP vs CNN by default).

    image->image: each item queries the rest; relevant = same label value; precision@k, recall@k,
    mAP@k, nDCG@k, overall and per label value. text->image (models with text): R@k and MRR, and
    zero-shot accuracy per label. 95% bootstrap intervals, and a paired comparison of two models.

    The published benchmark's protocol (to hold your figures against the leaderboard):
    --text-queries-from TITLE_COLUMN (R@1, R@10, MRR), --label-queries LABEL_COLUMN (P@1, P@10, MRR),
    and --fuse-text COLUMN for its text-fused documents.
    """
    from vrec.base.errors import VrecError
    from vrec.experiments.evaluate import evaluate
    from vrec.report import pages
    from vrec.report import render as r
    from vrec.report.hybrid_report import search_modes_table

    try:
        ks = [int(x) for x in k.split(",") if x.strip()]
    except ValueError:
        raise VrecError(f"--k takes comma-separated whole numbers, e.g. 1,5,10 (not {k!r}).") from None
    names = [m.strip() for m in models.split(",") if m.strip()]
    for path in report or ():
        pages.check_report_path(path)  # before the evaluation, which can take long
    with err.status("evaluating"):
        ev = evaluate(names, labels=label or (), ks=ks, store=store, queries=queries, text_template=text_template,
                      n_boot=bootstrap, seed=seed, device=device, text_queries_from=text_queries_from,
                      label_queries=label_queries, fuse_text=fuse_text, text_weight=text_weight,
                      query_photos=query_photos,
                      product_scores=[s.strip() for s in product_score.split(",") if s.strip()] or ["mean"],
                      search_modes=search_modes, tune_keyword_weight=tune_keyword_weight)
    for n in ev.notes:
        err.print(f"[dim]note: {n}[/dim]", highlight=False)
    out.print(r.eval_table(ev))
    if r.scoring_table(ev) is not None:
        out.print(r.scoring_table(ev))
    if search_modes_table(ev) is not None:
        out.print(search_modes_table(ev))
    for path in report or ():
        pages.write_eval_report(ev, path)
        err.print(f"wrote {path}")


@app.command()
def export(
    out_path: str = typer.Argument(..., metavar="OUT", help="Output file; its extension picks the format: "
                                   ".parquet, .npy or .csv; '-' writes CSV to stdout."),
    model: str = typer.Option("siglip", "--model", "-m", help="Model whose vectors to export."),
    fmt: str | None = typer.Option(None, "--format", help="parquet, npy or csv, for an OUT without extension "
                                      "\\[default: from OUT's extension; parquet without one]."),
    store: str | None = StoreOpt,
) -> None:
    """Export vectors with item ids and metadata for downstream models (e.g. a two-tower recommender).

    Metadata columns named like vrec's own (id, path, width, height, tags, vector, v0, ...) are
    written as meta_NAME.
    """
    from vrec.search.export import export_vectors

    info = export_vectors(out_path, model=model, store=store, fmt=fmt)
    print_notes(info["notes"])
    err.print(f"exported {info['items']} vectors of dim {info['dim']} ({info['format']}): {', '.join(info['files'])}")


@app.command()
def neighbours(
    out_path: str = typer.Argument(..., metavar="OUT", help="Output file: .parquet or .csv (by its extension; "
                                   "parquet without one); '-' writes CSV to stdout."),
    model: str = typer.Option("siglip", "--model", "-m", help="Model whose neighbours to use."),
    k: int = typer.Option(20, "--k", "-k", help="Neighbours per item (at least 1; beyond the catalog, all "
                          "other items)."),
    filter: list[str] | None = FilterOpt,
    store: str | None = StoreOpt,
) -> None:
    """Write the "similar items" table (item, rank, neighbour, score) for every item.

    --filter limits which items may be recommended (every item still gets a list). Items added since
    the last run (cold-start items) get neighbours like any other.
    """
    from vrec.search.export import similar_items

    info = similar_items(out_path, model=model, store=store, k=k, filters=filter or ())
    print_notes(info["notes"])
    err.print(f"wrote {info['rows']} rows ({info['items']} items x up to {info['k']} neighbours) to {info['file']}")
