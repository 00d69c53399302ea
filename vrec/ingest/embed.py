"""``vrec embed``: from photos to vectors in the store, incrementally, on one machine or a cluster.

The work is a chain of stage functions over batches -- find -> plan -> read+decode+preprocess
-> encode -> write -- that every engine calls:

- ``local`` (default): a thread pool decodes ahead of the model (Pillow releases the GIL while
  decoding and resizing), the model encodes full batches, a :class:`Recorder` writes the store;
- ``ray``: the same :func:`process_file` runs in Ray tasks, the same encoders in an actor pool,
  and the same Recorder writes the same store on the driver (see ``vrec.ingest.ray_engine``).

No lost work: finished batches are committed as store shards every COMMIT_SECONDS (3 s) and on Ctrl-C,
so an interrupted run resumes where it stopped. All models share one decode of each photo. The
stages themselves live in ``vrec.ingest.pipeline``, which both engines import.
"""
from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from vrec.base.errors import CatalogError, check_number
from vrec.base.userfiles import check_file
from vrec.ingest.catalog import Source, chunked
from vrec.ingest.metadata import METADATA_WANT, read_metadata
from vrec.ingest.pipeline import Decoded, Job, ModelReport, Recorder, plan_model
from vrec.ingest.sources import open_source
from vrec.models.weights import check_weights_file
from vrec.store.keywords import update_keywords
from vrec.store.store import ITEM_COLUMNS, Store, as_store
from vrec.store.writer import ModelWriter

CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # C0 control characters and DEL
DECODE_NICENESS = int(os.environ.get("VREC_DECODE_NICENESS", "10"))
ENGINES = ("local", "ray")


@dataclass
class EmbedReport:
    """What a run did: per-model counts, plus files that could not be used."""

    found: int
    models: list[ModelReport]
    skipped: list[tuple[str, str]]
    metadata: dict | None = None
    interrupted: bool = False
    load_seconds: float = 0.0  # building the models
    embed_seconds: float = 0.0  # reading, decoding, encoding and writing
    engine: str = "local"
    notes: list[str] = field(default_factory=list)  # for the user: hidden files skipped, a ';'-separated CSV read
    products: int | None = None  # products the photos show (None: one product per photo)

    @property
    def embedded(self) -> int:
        return sum(m.embedded for m in self.models)

    @property
    def images_per_second(self) -> float:
        done = max((m.embedded for m in self.models), default=0)
        return done / self.embed_seconds if self.embed_seconds else 0.0


# --- the entry point --------------------------------------------------------------------------

def embed(
    folder: str | os.PathLike | Source,
    models: Sequence[str] = ("siglip", "cnn"),
    store: str | os.PathLike | Store | None = None,
    metadata: str | os.PathLike | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    weights: dict[str, str] | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_model: Callable[[str], None] | None = None,
    engine: str = "local",
    ray_options: dict | None = None,
    verify: bool = False,
    feed=None,
    download_progress: Callable[[int, int], None] | None = None,
) -> EmbedReport:
    """Embed every image of a catalog with each model, writing only what is new or changed.

    ``folder`` is a local folder, a ``file://``/``s3://``/``gs://`` URI, or a CSV/parquet list of
    image paths (with optional ``id`` and metadata columns). ``weights`` maps a model name to a
    local weights file; ``workers`` the number of decode threads (default: one per core).
    ``progress(done, total)`` is called as files are processed; ``on_model(name)``
    before each model loads. ``engine`` is ``local`` or ``ray`` (``ray_options``: address,
    concurrency, gpus_per_worker). A file counts as unchanged when its path, size and
    modification time match what the store recorded; a file whose size or time changed is read
    and hashed, and re-embedded only if its content differs. ``verify`` hashes every file, to
    catch a photo replaced by another of the same size and time. ``feed``: how to read a product
    feed (``vrec.ingest.feed_source.FeedOptions``); its photos behind URLs are downloaded first
    (``download_progress(done, total)``), those that fail are skipped and listed. Returns an
    EmbedReport.
    """
    from vrec.models.registry import resolve, store_key
    from vrec.models.weights import expected_config

    device, batch_size, ray_options = _checked_options(metadata, weights, engine, device, precision, batch_size,
                                                       workers, ray_options)
    st = as_store(store)
    source, refs, notes = _catalog(folder, feed)
    weights = weights or {}
    entries = [resolve(m) for m in dict.fromkeys(models)]
    configs = {store_key(e.name): {**expected_config(e, weights.get(e.name)), "precision": precision}
               for e in entries}
    # metadata is read before the store is touched: a table that cannot be used changes nothing
    meta, meta_report = _metadata(metadata, source, refs, notes)
    st.create(source.root)
    if getattr(source, "has_urls", False):  # where its photos' copies are, for thumbnails and reports
        st.set_info(photo_cache=str(source.cache().folder))
    if meta is not None:
        st.write_metadata(meta)
    try:
        downloads = _download(source, refs, engine, download_progress)
    except KeyboardInterrupt:  # what was downloaded stays cached: the next run resumes from there
        raise EmbedInterrupted(EmbedReport(found=len(refs), models=[], skipped=[], interrupted=True,
                                           notes=notes)) from None
    failed = downloads.failed if downloads else {}
    stats, unusable = _stat_photos(source, [r for r in refs if r.path not in failed])
    unusable += [(r.path, f"cannot download ({failed[r.path]})") for r in refs if r.path in failed]
    usable = [r for r in refs if r.id in stats]

    interrupted = False
    with contextlib.ExitStack() as held:
        plans, maybe, stores, writers = _plan(st, entries, configs, usable, stats, verify, held)
        to_read = [r for r in usable if r.id in maybe or any(r.id in p.todo for p in plans.values())]
        busy = [k for k in plans if to_read and (plans[k].todo or any(k in m for m in maybe.values()))]
        job = Job(source, usable, to_read, plans, maybe, {k: resolve(stores[k].name).preprocess for k in busy},
                  {k: stores[k].name for k in busy})
        recorder = Recorder(job, stores, writers)
        recorder.skipped.extend(unusable)
        try:
            if engine == "ray":
                from vrec.ingest.ray_engine import run_ray

                t_load, t_embed = run_ray(job, recorder, batch_size, weights, precision, ray_options, progress)
            else:
                t_load, t_embed = _run_local(job, recorder, batch_size, workers, weights, device, precision,
                                             progress, on_model)
        except KeyboardInterrupt:
            interrupted = True
            t_load = t_embed = time.perf_counter()
        finally:
            if hasattr(source, "stop_downloads"):  # photos still downloading: cancelled, nothing half-written
                source.stop_downloads()
    for k, r in recorder.reports.items():
        r.unchanged += plans[k].unchanged
        r.repaired = writers[k].repaired
        stores[k].refresh()
        r.total = len(stores[k].items()) if stores[k].exists() else 0
    st.write_skipped(recorder.skipped)
    if downloads is not None and downloads.note():
        notes.append(downloads.note())
    left_out = _products_left_out(refs, [stores[k] for k in plans])
    if left_out:
        shown = ", ".join(map(repr, left_out[:5])) + (f" and {len(left_out) - 5} more" if len(left_out) > 5 else "")
        notes.append(f"{len(left_out)} product(s) have no photo that could be used and are not in the store: {shown} "
                     "(their photos are listed with the skipped files).")
    if recorder.repeats:
        path, first = recorder.repeats[0]
        notes.append(f"{len(recorder.repeats)} photo(s) repeat another photo of the same product byte for byte and "
                     f"were not embedded again (e.g. {path!r}, the same as {first!r}).")
    report = EmbedReport(found=len(refs), models=list(recorder.reports.values()), skipped=recorder.skipped,
                         metadata=meta_report, interrupted=interrupted, load_seconds=t_embed - t_load,
                         embed_seconds=time.perf_counter() - t_embed, engine=engine, notes=notes,
                         products=len({r.product for r in refs if r.product}) or None)
    if interrupted:
        raise EmbedInterrupted(report)
    _update_indexes(st, [stores[k].name for k in plans])
    update_keywords(st)  # the keyword index, where 'vrec index' built one: the products added, changed, removed
    return report


def _checked_options(metadata, weights, engine: str, device: str, precision: str, batch_size, workers,
                     ray_options) -> tuple[str, int, dict]:
    """Every option checked before anything is read or written (the files a user named first: cheap).
    Returns the device, the batch size and the Ray options, with their defaults filled in."""
    from vrec.models.encoders import check_precision, default_batch_size, pick_device

    if metadata is not None:
        check_file(metadata, "Metadata file", METADATA_WANT, CatalogError)
    for path in (weights or {}).values():
        check_weights_file(path)
    if engine not in ENGINES:
        raise CatalogError(f"Unknown engine {engine!r}; use one of: {', '.join(ENGINES)}.")
    if engine == "local":
        device = pick_device(device)
        check_precision(precision, device)
    if batch_size is not None:
        check_number("--batch-size", batch_size, min=1, max=65536, integer=True)
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    if workers is not None:
        check_number("--workers", workers, min=1, max=1024, integer=True)
    ray_options = ray_options or {}
    if ray_options.get("concurrency") is not None:
        check_number("--concurrency", ray_options["concurrency"], min=1, max=100_000, integer=True)
    if ray_options.get("gpus_per_worker") is not None:
        check_number("--gpus-per-worker", ray_options["gpus_per_worker"], min=0, max=64)
    return device, batch_size, ray_options


def _download(source: Source, refs, engine: str, progress):
    """Photos behind URLs: those cached are revalidated before planning (conditional requests), the
    others download while the embedding runs (on Ray, the workers fetch what the cache lacks).
    Returns what became of them (``feed_source.Prefetched``; complete once the run is over), or None."""
    if not hasattr(source, "prefetch") or engine == "ray":
        return None
    return source.prefetch(refs, progress=progress, pipeline=True)


def _catalog(folder, feed=None) -> tuple[Source, list, list[str]]:
    """The catalog's source, its photos and the notes about what it left out (hidden files)."""
    source = open_source(folder, feed)
    refs = source.refs()
    notes = list(getattr(source, "notes", []))
    if source.hidden is not None and source.hidden.note():
        notes.append(source.hidden.note())
    if not refs:
        raise CatalogError(
            f"No images found in {str(folder)!r} (looked for .jpg, .jpeg, .png, .webp, .bmp, .gif and .tif files, "
            f"recursively); pass the folder that holds your product photos."
        )
    return source, refs, notes


def _metadata(metadata, source: Source, refs, notes: list[str]) -> tuple[object, dict | None]:
    """The product metadata to store (from --metadata, else the list file's own columns) and its report."""
    if metadata is not None:
        meta, report = read_metadata(metadata, _product_refs(refs))
        notes += report.pop("notes", [])
        return meta, report
    if source.metadata is not None:
        meta = source.metadata
        return meta, {"rows": len(meta), "matched": len(meta), "unmatched_rows": 0, "items_without_metadata": 0}
    return None, None


def _products_left_out(refs, stores) -> list[str]:
    """Products of the catalog of which no photo is in the store (every one failed)."""
    wanted = list(dict.fromkeys(r.product for r in refs if r.product))
    kept: set = set()
    for ms in stores:
        if ms.exists():
            kept |= set(ms.items()["product"].astype(str))
    return [p for p in wanted if p not in kept] if wanted and stores else []


def _product_refs(refs):
    """One ref per product, named by the product (its main photo's path), for matching metadata rows."""
    from vrec.ingest.catalog import ImageRef

    if not any(r.product for r in refs):
        return refs
    firsts = {}
    for r in refs:
        firsts.setdefault(r.product or r.id, r)
    return [ImageRef(p, r.path) for p, r in firsts.items()]


def _stat_photos(source: Source, refs) -> tuple[dict, list[tuple[str, str]]]:
    """Each usable photo's stat, and the unusable ones with the reason: files that vanished, broken or
    looping symlinks, pipes and devices; names with a newline or another control character, which no
    URL, CSV row or terminal line can hold."""
    stats, unusable = {}, []
    for ref in refs:
        if CONTROL.search(ref.path) or CONTROL.search(ref.id):
            what = "name" if CONTROL.search(ref.path) else f"id {printable(ref.id)!r}"
            unusable.append((printable(ref.path), f"its {what} holds a control character (such as a newline or a "
                             "tab), which no link, CSV row or terminal line can hold; rename it"))
            continue
        try:
            stats[ref.id] = getattr(source, "peek", source.stat)(ref)
        except OSError as e:
            unusable.append((ref.path, f"cannot read ({e.strerror or e})"))
    return stats, unusable


def _plan(st: Store, entries, configs: dict, usable, stats: dict, verify: bool, held: contextlib.ExitStack):
    """Each model's plan (what to embed, what may have changed), store and writer. Each writer holds
    its lock from planning to the last commit, so two runs never plan against the same vectors; it
    also repairs shards whose files went missing."""
    from vrec.models.registry import store_key

    plans, maybe, stores, writers = {}, {}, {}, {}
    for e in entries:
        key = store_key(e.name)
        ms = st.model_for_writing(e.name)
        writers[key] = held.enter_context(ModelWriter(ms, configs[key]))
        items = ms.items() if ms.exists() else _empty_items()
        plans[key], maybe_ids = plan_model(usable, stats, items, verify=verify)
        stored = dict(zip(items["id"], items["hash"])) if len(items) else {}
        for i in maybe_ids:
            maybe.setdefault(i, {})[key] = stored[i]
        stores[key] = ms
    return plans, maybe, stores, writers


class EmbedInterrupted(KeyboardInterrupt):
    """Ctrl-C during embed, after finished batches were committed; carries the partial report."""

    def __init__(self, report: EmbedReport):
        super().__init__()
        self.report = report


def printable(path: str) -> str:
    """A path with its control characters written as escapes ('a\\nb' for a newline), for listings."""
    return CONTROL.sub(lambda m: repr(m.group())[1:-1], path)


def _empty_items():
    import pandas as pd

    return pd.DataFrame(columns=ITEM_COLUMNS + ["row"])


def _background_thread() -> None:
    """Decode threads run at a lower priority than the model: on a machine with few cores the
    model's threads then never wait on a preempted sibling (which costs far more than the decode
    itself), and decoding fills the gaps between batches."""
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: plain priority is fine
        pass


def _run_local(job: Job, recorder: Recorder, batch_size, workers, weights, device, precision, progress, on_model):
    """Decode ahead in a thread pool; encode full batches; commit every few seconds."""
    from vrec.models.encoders import create_encoder

    t_load = time.perf_counter()
    encoders = {}
    for k, name in job.names.items():
        if on_model:
            on_model(name)
        encoders[k] = create_encoder(name, weights=weights.get(name), device=device, precision=precision)
    t_embed = time.perf_counter()
    pending: dict[str, list[Decoded]] = {k: [] for k in encoders}
    total, done = len(job.to_read), 0

    def encode(k: str, batch: list[Decoded]) -> None:
        recorder.write(k, batch, encoders[k].encode_pixels(np.stack([d.pixels[k] for d in batch])))

    # one decode thread per core: on a GPU host decoding is the bottleneck, and on a CPU host the
    # threads run at low priority, filling the model's gaps rather than competing with it
    pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2, initializer=_background_thread)
    try:
        # a bounded number of batches in flight, so memory stays at a few batches of pixels
        for chunk in chunked(job.to_read, batch_size * 4):
            for d in pool.map(job.process, chunk):
                done += 1
                for k in recorder.accept(d):
                    pending[k].append(d)
                    if len(pending[k]) >= batch_size:
                        encode(k, pending[k])
                        pending[k] = []
                if progress:
                    progress(done, total)
            recorder.tick()
        for k, batch in pending.items():
            if batch:
                encode(k, batch)
        if progress:
            progress(total, total)
    finally:
        # on Ctrl-C or kill, do not wait for decodes still queued: the finished batches are committed
        # by the caller at once
        pool.shutdown(wait=False, cancel_futures=True)
    return t_load, t_embed


def _update_indexes(st: Store, names: Iterable[str]) -> None:
    """Keep existing indexes in step with the vectors (embed's last step)."""
    from vrec.store import index as index_mod
    from vrec.store.products import ProductStore, save_products

    for name in names:
        ms = st.model_for_writing(name)
        if ms.exists() and ms.manifest().get("index"):
            index_mod.update_index(ms)
        if ms.exists() and ms.manifest().get("products"):  # the product vectors, and their index if photos have one
            save_products(ProductStore(ms), index=bool(ms.manifest().get("index")))
