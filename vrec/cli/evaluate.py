"""``vrec eval``, ``vrec export`` and ``vrec neighbours``."""
from __future__ import annotations

import typer
from rich.markup import escape as rich_escape

from vrec.cli.common import DeviceOpt, FilterOpt, StoreOpt, app, err, out, print_notes


@app.command("eval")
def eval_(
    models: str = typer.Option("siglip,cnn", "--models", help="Comma-separated embedded models to evaluate; "
                               "three or more are ranked, with Holm-adjusted pairwise verdicts."),
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
    language_columns: str | None = typer.Option(None, "--language-columns", help="Cross-language protocol: "
                                                   "LANG=COLUMN pairs holding the same text in several languages, "
                                                   "e.g. en=title,sv=title_sv; each product asked in "
                                                   "each language, R@k and MRR per language and their paired gap."),
    interactions: str | None = typer.Option(None, "--interactions", help="CSV or Parquet event log (session, item, "
                                               "event, timestamp): items co-occurring in a session are relevant; "
                                               "nDCG@k, hit@k, MRR overall and for cold-start items."),
    interaction_columns: str | None = typer.Option(None, "--interaction-columns", help="The log's column names, "
                                                      "e.g. session=visit,item=sku (also event=, time=) \\[default: "
                                                      "session (else user), item, event, timestamp]."),
    event_weights: str | None = typer.Option(None, "--event-weights", help="Weight of each event type, e.g. "
                                                "view=1,cart=3,purchase=5 (the default; other events weigh 1)."),
    session_gap: float | None = typer.Option(None, "--session-gap", help="Minutes without an event that end a visit: "
                                                "split each session (or user) into visits \\[default: no split]."),
    cold_events: int = typer.Option(5, "--cold-events", help="Cold-start slice: items with fewer events than this "
                                       "(or first seen in the log's last 10%)."),
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
    zero-shot accuracy per label. 95% bootstrap intervals, and a paired comparison of two models; with
    three or more, every model ranked on every figure, every pair compared with Holm-adjusted p-values,
    and a first line naming the model for this catalog. A queries file with a 'lang' column, or
    --language-columns, gives figures per query language. With --label or --interactions, beyond
    accuracy too: catalog coverage@k, in-degree Gini@k (and the most over-recommended items),
    intra-list diversity@k.

    --interactions LOG: co-occurrence in the shoppers' sessions is the relevance (weighted by event
    type: view < cart < purchase); nDCG@k, hit@k and MRR of each model's similar items, overall and
    for cold-start items. The log is streamed, never loaded whole.

    The published benchmark's protocol (to hold your figures against the leaderboard):
    --text-queries-from TITLE_COLUMN (R@1, R@10, MRR), --label-queries LABEL_COLUMN (P@1, P@10, MRR),
    and --fuse-text COLUMN for its text-fused documents.
    """
    from vrec.base.errors import VrecError
    from vrec.experiments.evaluate import evaluate
    from vrec.experiments.interactions import parse_columns, parse_weights
    from vrec.report import pages
    from vrec.report import render as r
    from vrec.report.beyond_report import hubs_table
    from vrec.report.hybrid_report import search_modes_table
    from vrec.report.languages import language_rich
    from vrec.report.ranking import ranking_rich

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
                      query_photos=query_photos, interactions=interactions,
                      interaction_columns=parse_columns(interaction_columns), event_weights=parse_weights(event_weights),
                      session_gap=session_gap, cold_events=cold_events,
                      product_scores=[s.strip() for s in product_score.split(",") if s.strip()] or ["mean"],
                      language_columns=language_columns, search_modes=search_modes,
                      tune_keyword_weight=tune_keyword_weight)
    for n in ev.notes:  # escaped: a query set's name holds brackets ('file [sv]')
        err.print(f"[dim]note: {rich_escape(n)}[/dim]", highlight=False)
    if ev.ranking is not None:  # the first line answers "which model for this catalog"
        out.print(ev.ranking.verdict, highlight=False, markup=False)
    if ev.metrics or not ev.search_modes:  # --search-modes on a model without a text tower: its table alone
        out.print(r.eval_table(ev))
    for t in ranking_rich(ev) + language_rich(ev):
        out.print(t)
    if r.scoring_table(ev) is not None:
        out.print(r.scoring_table(ev))
    if ev.hubs:
        out.print(hubs_table(ev.hubs))
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
