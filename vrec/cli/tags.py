"""``vrec tag`` and ``vrec map``."""
from __future__ import annotations

import typer

from vrec.cli.common import DeviceOpt, StoreOpt, app, err, out

VocabOpt = typer.Option(None, "--vocab", help="Vocabulary file (UTF-8, one concept per line, 'group:' lines start a "
                        "group, a comma separates concepts), or a built-in one: fashion, home; repeatable "
                        "\\[default: fashion].")


@app.command()
def tag(
    vocab: list[str] | None = VocabOpt,
    threshold: float = typer.Option(0.1, "--threshold", help="Smallest SigLIP match probability for a tag (0 to 1)."),
    top: int = typer.Option(2, "--top", help="At most this many tags per vocabulary group and item (1 or more)."),
    model: str = typer.Option("siglip", "--model", "-m", help="A model with a text tower."),
    csv: str | None = typer.Option(None, "--csv", help="Also write every item's tags to a CSV file."),
    store: str | None = StoreOpt,
    device: str = DeviceOpt,
) -> None:
    """Tag every item zero-shot with style, occasion, material, pattern... concepts.

    Each tag carries SigLIP's own match probability (a sigmoid per photo-concept pair, not a
    softmax across tags), so thresholds mean the same for every concept. Tags are saved in the
    store: filter with --filter tag:minimalist; search and compare show them.
    """
    from vrec.base.files import atomic_path
    from vrec.base.records import csv_safe
    from vrec.report import render as r
    from vrec.search.tags import check_output_file, save_tags
    from vrec.search.tags import tag as run
    from vrec.store.catalog_table import catalog_table
    from vrec.store.store import Store
    if csv:
        check_output_file(csv, "--csv")
    result = run(model=model, store=store, vocab=vocab or (), threshold=threshold, top=top, save=False, device=device)
    if csv:  # before the store is touched: a CSV that cannot be written leaves everything as it was
        with atomic_path(csv) as tmp:
            csv_safe(result.table).to_csv(tmp, index=False)
        err.print(f"wrote {csv}")
    st = Store(store)
    save_tags(st, result.long)
    catalog = catalog_table(st, st.model(model))
    out.print(r.tags_table(result, catalog))
    out.print(r.tag_counts_table(result))
    tagged = int((result.table["tags"] != "").sum())
    err.print(f"tagged {tagged} of {len(result.table)} items; saved in the store (use --filter tag:NAME)")


@app.command("map")
def map_(
    clusters: str = typer.Option("auto", "--clusters", help="Number of clusters (2 to 200), or auto: the best mean "
                                 "silhouette among K from about 0.5 to 1.5 x sqrt(items/2), at most 40 (10..30 for "
                                 "800 items), so clusters are shelf-sized rather than the coarsest split."),
    label: str | None = typer.Option(None, "--label", help="Metadata column to show the mix of (e.g. category)."),
    vocab: list[str] | None = VocabOpt,
    html: str | None = typer.Option(None, "--html", help="Write a page with the 2-D map and a row of photos per "
                                       "cluster (not with --gaps)."),
    csv: str | None = typer.Option(None, "--csv", help="Write id, cluster, cluster name and map position per item; "
                                      "with --gaps, the gaps and over-served concepts."),
    gaps: bool = typer.Option(False, "--gaps", help="List vocabulary concepts the catalog barely covers (gaps) "
                              "and the ones it covers most (over-served), instead of clusters."),
    threshold: float = typer.Option(0.1, "--threshold", help="With --gaps: match probability that counts as covering "
                                    "(0 to 1)."),
    min_items: int = typer.Option(3, "--min-items", help="With --gaps: fewer items than this above the threshold is a "
                                  "gap (1 or more)."),
    model: str = typer.Option("siglip", "--model", "-m", help="Model whose vectors to map."),
    seed: int = typer.Option(0, "--seed", help="Seed for k-means (0 or more)."),
    store: str | None = StoreOpt,
    device: str = DeviceOpt,
) -> None:
    """Group the assortment into style clusters named by vocabulary concepts, or find its gaps."""
    from vrec.base.errors import QueryError
    from vrec.base.files import atomic_path
    from vrec.base.records import csv_safe
    from vrec.report import pages
    from vrec.report import render as r
    from vrec.search.tags import check_gap_options, check_output_file, read_vocabs
    check_gap_options(threshold, min_items)
    read_vocabs(vocab or ())  # a vocabulary that cannot be read fails now, not after the models load
    if gaps and html:
        raise QueryError("--html draws the style map and has no gaps page; drop --html, or use --csv FILE "
                         "to save the gaps.")
    for option, path in (("--html", html), ("--csv", csv)):
        if path:
            check_output_file(path, option)
    if gaps:
        from vrec.search.tags import gaps as run_gaps
        from vrec.search.tags import gaps_frame

        gap_list, over = run_gaps(model=model, store=store, vocab=vocab or (), threshold=threshold,
                                  min_items=min_items, device=device)
        for t in r.gaps_tables(gap_list, over, threshold, min_items):
            out.print(t)
        if csv:
            with atomic_path(csv) as tmp:
                csv_safe(gaps_frame(gap_list, over)).to_csv(tmp, index=False)
            err.print(f"wrote {csv}")
        return
    from vrec.search.stylemap import style_map

    with err.status("clustering"):
        sm = style_map(model=model, store=store, clusters=clusters, label=label, vocab=vocab or (), seed=seed, device=device)
    out.print(r.map_table(sm))
    if html:
        pages.write_page(html, f"vrec style map ({model})", pages.map_html(sm))
        err.print(f"wrote {html}")
    if csv:
        with atomic_path(csv) as tmp:
            csv_safe(sm.items).to_csv(tmp, index=False)
        err.print(f"wrote {csv}")
