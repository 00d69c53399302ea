"""``vrec tag`` and ``vrec map``."""
from __future__ import annotations

from typing import List, Optional

import typer

from .common import DeviceOpt, StoreOpt, app, err, out

VocabOpt = typer.Option(None, "--vocab", help="Vocabulary file (one concept per line, 'group:' lines start a "
                        "group), or a built-in one: fashion, home; repeatable \\[default: fashion].")


@app.command()
def tag(
    vocab: Optional[List[str]] = VocabOpt,
    threshold: float = typer.Option(0.1, "--threshold", help="Smallest SigLIP match probability for a tag."),
    top: int = typer.Option(2, "--top", help="At most this many tags per vocabulary group and item."),
    model: str = typer.Option("siglip", "--model", "-m", help="A model with a text tower."),
    csv: Optional[str] = typer.Option(None, "--csv", help="Also write every item's tags to a CSV file."),
    store: Optional[str] = StoreOpt,
    device: str = DeviceOpt,
) -> None:
    """Tag every item zero-shot with style, occasion, material, pattern... concepts.

    Each tag carries SigLIP's own match probability (a sigmoid per photo-concept pair, not a
    softmax across tags), so thresholds mean the same for every concept. Tags are saved in the
    store: filter with --filter tag:minimalist; search and compare show them.
    """
    from .. import render as r
    from ..search import catalog_table
    from ..store import Store
    from ..tags import tag as run

    result = run(model=model, store=store, vocab=vocab or (), threshold=threshold, top=top, device=device)
    st = Store(store)
    catalog = catalog_table(st, st.model(model))
    out.print(r.tags_table(result, catalog))
    out.print(r.tag_counts_table(result))
    if csv:
        from ..store import atomic_path

        with atomic_path(csv) as tmp:
            result.table.to_csv(tmp, index=False)
        err.print(f"wrote {csv}")
    tagged = int((result.table["tags"] != "").sum())
    err.print(f"tagged {tagged} of {len(result.table)} items; saved in the store (use --filter tag:NAME)")


@app.command("map")
def map_(
    clusters: str = typer.Option("auto", "--clusters", help="Number of clusters, or auto (best mean silhouette)."),
    label: Optional[str] = typer.Option(None, "--label", help="Metadata column to show the mix of (e.g. category)."),
    vocab: Optional[List[str]] = VocabOpt,
    html: Optional[str] = typer.Option(None, "--html", help="Write a page with the 2-D map and a row of photos per cluster."),
    csv: Optional[str] = typer.Option(None, "--csv", help="Write id, cluster, cluster name and map position per item."),
    gaps: bool = typer.Option(False, "--gaps", help="List vocabulary concepts the catalog barely covers (gaps) "
                              "and the ones it covers most (over-served), instead of clusters."),
    threshold: float = typer.Option(0.1, "--threshold", help="With --gaps: match probability that counts as covering."),
    min_items: int = typer.Option(3, "--min-items", help="With --gaps: fewer items than this above the threshold is a gap."),
    model: str = typer.Option("siglip", "--model", "-m", help="Model whose vectors to map."),
    seed: int = typer.Option(0, "--seed", help="Seed for k-means."),
    store: Optional[str] = StoreOpt,
    device: str = DeviceOpt,
) -> None:
    """Group the assortment into style clusters named by vocabulary concepts, or find its gaps."""
    from .. import render as r

    if gaps:
        from ..tags import gaps as run_gaps

        gap_list, over = run_gaps(model=model, store=store, vocab=vocab or (), threshold=threshold,
                                  min_items=min_items, device=device)
        for t in r.gaps_tables(gap_list, over, threshold, min_items):
            out.print(t)
        return
    from ..stylemap import style_map

    with err.status("clustering"):
        sm = style_map(model=model, store=store, clusters=clusters, label=label, vocab=vocab or (), seed=seed, device=device)
    out.print(r.map_table(sm))
    if html:
        r.write_page(html, f"vrec style map ({model})", r.map_html(sm))
        err.print(f"wrote {html}")
    if csv:
        from ..store import atomic_path

        with atomic_path(csv) as tmp:
            sm.items.to_csv(tmp, index=False)
        err.print(f"wrote {csv}")
