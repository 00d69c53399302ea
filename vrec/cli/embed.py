"""``vrec embed`` and ``vrec index``."""
from __future__ import annotations

import signal

import typer

from vrec.cli.common import DeviceOpt, StoreOpt, app, err, out, print_notes


@app.command()
def embed(
    folder: str = typer.Argument(..., metavar="SRC", help="Folder of product photos (searched recursively), a URI, or a list file."),
    model: list[str] | None = typer.Option(None, "--model", "-m", help="Model to embed with; repeat for several "
                                              "\\[default: siglip and cnn]. See 'vrec models'."),
    store: str | None = StoreOpt,
    metadata: str | None = typer.Option(None, "--metadata", help="CSV of product data with an 'id' or file column "
                                           "(title, category, price, ...); may be re-applied at any time."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per model batch "
                                             "\\[default: 32 on CPU, 128 on GPU]."),
    device: str = DeviceOpt,
    precision: str = typer.Option("fp32", "--precision", help="fp32; fp16 or bf16 on a GPU; int8 (dynamic "
                                  "quantisation of Linear layers) on a CPU. See BENCHMARKS.md for speed and fidelity."),
    weights: str | None = typer.Option(None, "--weights", help="Local weights file for the (single) --model."),
    workers: int | None = typer.Option(None, "--workers", help="Threads that read and decode photos ahead of the "
                                          "model \\[default: one per CPU core]."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    engine: str = typer.Option("local", "--engine", envvar="VREC_ENGINE", show_envvar=True,
                               help="local (this process) or ray (Ray Data, on a local Ray or a cluster)."),
    ray_address: str | None = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS", show_envvar=True,
                                              help="With --engine ray: the cluster to join \\[default: start a local Ray]."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="With --engine ray: number of encoder actors."),
    gpus_per_worker: float = typer.Option(0, "--gpus-per-worker", help="With --engine ray: GPUs per encoder actor."),
    verify: bool = typer.Option(False, "--verify", help="Read and hash every photo, to catch one replaced by another "
                                "of the same size and modification time (slower: every file is read)."),
    id_column: str | None = typer.Option(None, "--id-column", help="Feed: the column of product ids "
                                            "\\[default: id (Google Merchant), Handle (Shopify)]."),
    image_column: list[str] | None = typer.Option(None, "--image-column", help="Feed: a column of photo paths or "
                                                     "URLs (one, or several comma-separated, per cell); repeat or "
                                                     "comma-separate for several columns."),
    group_column: str | None = typer.Option(None, "--group-column", help="Feed: the column that groups variants "
                                               "\\[default: item_group_id]."),
    title_column: str | None = typer.Option(None, "--title-column", help="Feed: the column of product titles."),
    cache: str | None = typer.Option(None, "--cache", help="Folder for photos downloaded from URLs \\[default: "
                                     "photos under $VREC_CACHE_DIR, else ~/.cache/vrec/photos]."),
) -> None:
    """Embed every photo in SRC and keep the vectors in the store.

    SRC is a folder of photos, a file://, s3:// or gs:// URI, a CSV/parquet list of image paths
    (column 'path'; 'id', 'product' and metadata columns optional), or a product feed (Google
    Merchant or Shopify CSV, or any CSV, TSV, Parquet or JSON Lines file with --id-column and
    --image-column; gzipped too), whose photos may be paths or http(s) URLs. A product's photos
    are all embedded; every command then answers with products. Re-running embeds only new or
    changed photos and drops deleted ones (a URL is asked again with a conditional request); an
    interrupted run keeps what it finished and the next run resumes. Unreadable files and failed
    downloads are skipped and listed, and tried again by the next run.
    """
    from rich.markup import escape

    from vrec.base.errors import VrecError
    from vrec.ingest.embed import EmbedInterrupted
    from vrec.ingest.embed import embed as run
    from vrec.ingest.feed_source import FeedOptions
    from vrec.models.registry import DEFAULT_MODELS

    images = tuple(c.strip() for v in image_column or () for c in v.split(",") if c.strip())
    feed = FeedOptions(id_column, images, group_column, title_column, cache)
    models = list(model or DEFAULT_MODELS)
    if weights and len(models) != 1:
        raise VrecError("--weights needs exactly one --model, the one the weights belong to.")
    progress, task = _progress(quiet)
    # Ctrl-C and a plain 'kill' stop the run the same gentle way: finished batches are committed.
    # SIGINT is set explicitly because a shell starts background jobs with it ignored, and Python
    # then never installs its own handler; an embed started that way must still stop on SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with progress:
            report = run(folder, models=models, store=store, metadata=metadata, batch_size=batch_size, device=device,
                         precision=precision, engine=engine, workers=workers,
                         ray_options={"address": ray_address, "concurrency": concurrency, "gpus_per_worker": gpus_per_worker},
                         weights={models[0]: weights} if weights else None, verify=verify, feed=feed,
                         download_progress=lambda d, t: progress.update(task, completed=d, total=t,
                                                                        description="downloading"),
                         progress=lambda d, t: progress.update(task, completed=d, total=t, description="embedding"),
                         on_model=lambda name: progress.update(task, description=f"loading {name}"))
    except EmbedInterrupted as e:
        err.print(f"Interrupted: kept {e.report.embedded} new vectors; run the same command again to resume.")
        _exit_now_if_stuck(130)
        raise typer.Exit(130) from None
    if not quiet:
        _summary(report)
    _notes(report)
    if report.skipped and not quiet:
        err.print(f"[yellow]Skipped {len(report.skipped)} file(s) that could not be used:[/yellow]")
        for path, reason in report.skipped[:20]:
            err.print(f"  {escape(path)}: {escape(reason)}", highlight=False)
        if len(report.skipped) > 20:
            err.print(f"  ... and {len(report.skipped) - 20} more (see skipped.parquet in the store)")
    if report.found and len(report.skipped) == report.found:
        raise VrecError(f"None of the {report.found} images could be read; see the list above.")


def _notes(report) -> None:
    """Warnings a user must see even with --quiet: repaired damage, duplicate metadata rows, and
    what was read or skipped other than one might think (hidden files, a ';'-separated CSV)."""
    from rich.markup import escape

    for m in report.models:
        if m.repaired:
            err.print(f"[yellow]Repaired:[/yellow] {m.repaired} {m.model} vector(s) whose shard files were missing "
                      f"were embedded again.", highlight=False)
    md = report.metadata or {}
    if md.get("duplicate_rows"):
        err.print(f"[yellow]Note:[/yellow] {md['duplicate_rows']} metadata row(s) repeat an id already given "
                  f"(e.g. {escape(', '.join(repr(i) for i in md['duplicate_ids']))}); the last row of each id was kept.",
                  highlight=False)
    print_notes(report.notes)


def _exit_now_if_stuck(code: int) -> None:
    """After an interrupt, leave at once if a decode thread is still blocked (a hung network file
    system, say): Python would otherwise wait for it at exit, and the run would never stop. The
    store is already committed at this point."""
    import os
    import sys
    import threading

    decoders = [t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor")]
    for t in decoders:
        t.join(timeout=2)  # an idle decoder leaves at once; only a blocked one stays
    if any(t.is_alive() for t in decoders):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _progress(quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    class Rate(TextColumn):
        def __init__(self):
            super().__init__("")

        def render(self, task):
            from rich.text import Text
            return Text(f"{task.speed:.1f} img/s" if task.speed else "", style="cyan")

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=err, disable=quiet, transient=False)
    task = progress.add_task("embedding", total=None)
    return progress, task


def _summary(report) -> None:
    from rich.markup import escape

    from vrec.report.render import new_table

    found = f"{report.found} images found" if report.products in (None, report.found) else \
        f"{report.products} products, {report.found} photos found"
    t = new_table(found)
    for c in ("model", "new", "changed", "removed", "unchanged", "skipped", "in store"):
        t.add_column(c, justify="right" if c != "model" else "left", whole=True)
    for m in report.models:
        t.add_row(escape(m.model), str(m.new), str(m.changed), str(m.removed), str(m.unchanged), str(len(report.skipped)),
                  str(m.total))
    err.print(t)
    if report.embedded:
        err.print(f"embedded {report.embedded} vector(s) in {report.embed_seconds:.1f} s "
                  f"({report.images_per_second:.1f} images/s; models loaded in {report.load_seconds:.1f} s, "
                  f"{report.engine} engine)")
    if report.metadata:
        md = report.metadata
        unit = "image" if report.products in (None, report.found) else "product"
        err.print(f"metadata: {md['matched']} of {md['rows']} rows matched {'an' if unit == 'image' else 'a'} {unit}; "
                  f"{md['items_without_metadata']} {unit}s have no metadata row")


@app.command()
def index(
    model: list[str] | None = typer.Option(None, "--model", "-m", help="Model(s) to index \\[default: all in the store]."),
    store: str | None = StoreOpt,
    m: int = typer.Option(16, "--m", help="HNSW graph degree (M)."),
    ef_construction: int = typer.Option(200, "--ef-construction", help="HNSW build-time search width."),
    target_recall: float = typer.Option(0.99, "--target-recall", help="Recall@10 versus exact search that the "
                                        "query-time ef must reach (measured on sampled queries)."),
    stats_only: bool = typer.Option(False, "--stats", help="Print the index statistics; build only where missing or stale."),
    text_columns: str | None = typer.Option(None, "--text-columns", help="Metadata columns of the keyword index, "
                                            "comma-separated; kept by later runs, 'auto' goes back to the default \\[default: every text column but "
                                            "links and paths]."),
) -> None:
    """Build an HNSW index per model, tuned to reach the target recall, and save it in the store;
    and the keyword index of the catalog's words (titles, brands, ids...) for hybrid search.

    For a model with a text tower, also export it to ONNX once (into the user cache), so that text
    queries start without torch."""
    from rich.markup import escape

    from vrec.base.errors import VrecError
    from vrec.report.render import new_table
    from vrec.store import index as ix
    from vrec.store.store import Store

    ix.check_index_options(m, ef_construction, target_recall)  # before any work: a bad value is a typo
    st = Store(store)
    st.info()
    names = list(model or st.model_names())
    if not names:
        raise VrecError(f"The store {str(st.path)!r} holds no vectors yet; run 'vrec embed FOLDER' first.")
    table = new_table("HNSW indexes")
    for c in ("model", "items", "M", "ef_construction", "ef", "recall@10", "build s", "size MB (= RAM)", "peak MB", "state"):
        table.add_column(c, justify="left" if c in ("model", "state") else "right", whole=c != "state")
    for name in names:
        ms = st.photos(name)
        s = ix.stats(ms)
        if not stats_only or s is None or not s.fresh:
            with err.status(f"indexing {name} ({len(ms)} items)"):
                s = ix.build_index(ms, m=m, ef_construction=ef_construction, target_recall=target_recall)
                index_products(st.model(name), m, ef_construction, target_recall)
        state = "fresh" if s.fresh else "stale"
        if len(ms) < ix.EXACT_BELOW:
            state += " (searched exactly: small catalog)"
        table.add_row(escape(name), str(s.items), str(s.m), str(s.ef_construction), str(s.ef), f"{s.recall_at_10:.3f}",
                      f"{s.build_seconds:.2f}", f"{s.size_bytes / 1e6:.2f}",
                      f"{s.peak_rss_mb:.0f}" if s.peak_rss_mb else "—", state)
    out.print(table)
    keyword_index(st, text_columns, stats_only)
    if not stats_only:
        for name in names:
            text_tower_ready(st.model(name))


def keyword_index(st, text_columns: str | None, stats_only: bool) -> None:
    """Build the keyword index of hybrid search (unless --stats finds one) and say what it holds."""
    from vrec.base.errors import StoreError
    from vrec.store import keywords as kw

    s = None
    if stats_only and kw.has_keywords(st) and text_columns is None:
        try:
            s = kw.keyword_stats(st)
        except StoreError:  # another version's or a damaged index: --stats builds what is stale
            pass
    if s is None:
        with err.status("indexing the catalog's words"):
            s = kw.build_keywords(st, text_columns.split(",") if text_columns is not None else None)
    what = f"columns {', '.join(['id', *s['columns']])}" if s["columns"] else "ids only"
    err.print(f"keyword index: {s['documents']} documents, {what} ({s['size_bytes'] / 1e6:.2f} MB)", highlight=False)


def index_products(ms, m: int, ef_construction: int, target_recall: float) -> None:
    """For a catalog of products with several photos, the product vectors and their HNSW index too."""
    from vrec.store.products import save_products

    if getattr(ms, "grain", "photo") == "product":
        save_products(ms, index=True, m=m, ef_construction=ef_construction, target_recall=target_recall)


def text_tower_ready(ms) -> None:
    """Export the model's text tower to ONNX if it has none yet, so that the first text query starts
    fast; a model whose weights are not here (or differ from the default) is left to that query."""
    from vrec.base.errors import ConfigMismatch, VrecError
    from vrec.models.encoders import prepare_text_tower
    from vrec.search.query import check_config

    try:
        check_config(ms)
    except ConfigMismatch:  # vectors made with other weights (--weights FILE): the query knows which
        return
    try:
        prepare_text_tower(ms.name)
    except VrecError as e:
        err.print(f"[yellow]Note:[/yellow] {ms.name}'s text tower is not exported for fast text queries yet "
                  f"({e}); the first text query will export it.", highlight=False)
