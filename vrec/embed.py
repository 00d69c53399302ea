"""``vrec embed``: from a folder of photos to vectors in the store, incrementally.

The work is a chain of stage functions over batches -- find -> plan -> read+decode+preprocess
-> encode -> write -- so that any engine can drive them: :func:`embed` runs them locally with a
thread pool decoding ahead of the model (Pillow releases the GIL while decoding and resizing),
and a cluster engine can map the same functions over its own batches.

No lost work: finished batches are committed as store shards every few seconds and on Ctrl-C,
so an interrupted run resumes where it stopped. All models share one decode of each photo.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .catalog import BadImage, ImageRef, chunked, content_hash, decode_image, find_images, read_metadata
from .errors import CatalogError
from .preprocess import to_pixels
from .store import ITEM_COLUMNS, Store

COMMIT_SECONDS = float(os.environ.get("VREC_COMMIT_SECONDS", "10"))
DECODE_NICENESS = int(os.environ.get("VREC_DECODE_NICENESS", "10"))


@dataclass
class ModelPlan:
    """What one model must do in this run."""

    todo: set[str] = field(default_factory=set)  # ids to (re-)embed
    new: int = 0
    changed: int = 0
    removed_rows: list[int] = field(default_factory=list)
    unchanged: int = 0


@dataclass
class ModelReport:
    model: str
    new: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0
    total: int = 0  # items in the store afterwards


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

    @property
    def images_per_second(self) -> float:
        done = max((m.embedded for m in self.models), default=0)
        return done / self.embed_seconds if self.embed_seconds else 0.0

    @property
    def embedded(self) -> int:
        return sum(m.embedded for m in self.models)


@dataclass
class Decoded:
    """One file after read -> decode -> preprocess (pixels per model key), or its failure."""

    ref: ImageRef
    hash: str = ""
    size: int = 0
    mtime: int = 0
    width: int = 0
    height: int = 0
    pixels: dict = field(default_factory=dict)
    error: str | None = None


# --- stages -----------------------------------------------------------------------------------

def stat_of(root: Path, ref: ImageRef) -> tuple[int, int]:
    st = os.stat(root / ref.path)
    return st.st_size, st.st_mtime_ns


def plan_model(refs: Sequence[ImageRef], stats: dict[str, tuple[int, int]], items) -> tuple[ModelPlan, set[str]]:
    """Compare the folder with a model's stored items.

    Returns the plan, and the ids whose stat changed but which may still hold the same bytes
    (these are read and hashed before deciding).
    """
    plan = ModelPlan()
    known = {r.id: r for r in items.itertuples(index=False)} if len(items) else {}
    maybe: set[str] = set()
    for ref in refs:
        old = known.get(ref.id)
        if old is None:
            plan.todo.add(ref.id)
            plan.new += 1
        elif old.path == ref.path and (int(old.size), int(old.mtime)) == stats[ref.id]:
            plan.unchanged += 1
        else:
            maybe.add(ref.id)
    present = {r.id for r in refs}
    plan.removed_rows = [int(r.row) for r in known.values() if r.id not in present]
    return plan, maybe


def process_file(root: Path, ref: ImageRef, specs: dict, min_size: int, known_hash: dict | None = None) -> Decoded:
    """Read, hash, decode and preprocess one file for the model keys in ``specs``.

    ``known_hash`` maps model key -> stored hash; models whose stored hash equals the file's are
    left out (the file was touched, not changed). Never raises for a bad file: the reason is
    returned in ``error``.
    """
    out = Decoded(ref)
    try:
        st = os.stat(root / ref.path)
        out.size, out.mtime = st.st_size, st.st_mtime_ns
        with open(root / ref.path, "rb") as f:
            data = f.read()
    except OSError as e:
        out.error = f"cannot read ({e.strerror})"
        return out
    out.hash = content_hash(data)
    if known_hash:
        specs = {k: s for k, s in specs.items() if known_hash.get(k) != out.hash}
        if not specs:
            return out
    try:
        img = decode_image(data, min_size=min_size)
        out.width, out.height = img.info.get("full_size", img.size)
        out.pixels = {k: to_pixels(img, s) for k, s in specs.items()}
    except BadImage as e:
        out.error = str(e)
    return out


def item_rows(done: Sequence[Decoded]):
    import pandas as pd

    return pd.DataFrame(
        [(d.ref.id, d.ref.path, d.hash, d.size, d.mtime, d.width, d.height) for d in done], columns=ITEM_COLUMNS
    )


# --- the local engine -------------------------------------------------------------------------

def embed(
    folder: str | os.PathLike,
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
) -> EmbedReport:
    """Embed every image below ``folder`` with each model, writing only what is new or changed.

    ``weights`` maps a model name to a local weights file. ``progress(done, total)`` is called
    as files are processed; ``on_model(name)`` before each model loads. Returns an EmbedReport.
    """
    from .encoders import create_encoder, default_batch_size, expected_config, pick_device, resolve, store_key

    device = pick_device(device)
    batch_size = batch_size or default_batch_size(device)
    if batch_size < 1:
        raise CatalogError("--batch-size must be at least 1.")
    st = store if isinstance(store, Store) else Store(store)
    root = Path(folder)
    refs = find_images(root)
    if not refs:
        raise CatalogError(
            f"No images found in {str(folder)!r} (looked for {', '.join(sorted({'.jpg', '.png', '.webp', '.bmp', '.gif', '.tif'}))} "
            f"files, recursively); pass the folder that holds your product photos."
        )
    weights = weights or {}
    entries = [resolve(m) for m in dict.fromkeys(models)]
    st.create(root)
    meta_report = None
    if metadata is not None:
        meta, meta_report = read_metadata(metadata, refs)
        st.write_metadata(meta)

    # plan: which ids does each model need, and which files must be read at all
    stats = {}
    for ref in refs:
        stats[ref.id] = stat_of(root, ref)
    by_id = {r.id: r for r in refs}
    plans: dict[str, ModelPlan] = {}
    maybe: dict[str, dict[str, str]] = {}  # id -> {model key: stored hash} for stat-changed files
    stores = {}
    for e in entries:
        key = store_key(e.name)
        ms = st.model_for_writing(e.name)
        ms.check_config(expected_config(e, weights.get(e.name)))
        items = ms.items() if ms.exists() else _empty_items()
        plans[key], maybe_ids = plan_model(refs, stats, items)
        stored = dict(zip(items["id"], items["hash"])) if len(items) else {}
        for i in maybe_ids:
            maybe.setdefault(i, {})[key] = stored[i]
        stores[key] = ms
    to_read = [r for r in refs if r.id in maybe or any(r.id in p.todo for p in plans.values())]

    reports = {k: ModelReport(model=stores[k].name) for k in plans}
    skipped: list[tuple[str, str]] = []
    encoders = {}
    t_load = time.perf_counter()
    for e in entries:
        key = store_key(e.name)
        if to_read and (plans[key].todo or any(key in m for m in maybe.values())):
            if on_model:
                on_model(e.name)
            encoders[key] = create_encoder(e.name, weights=weights.get(e.name), device=device, precision=precision)

    t_embed = time.perf_counter()
    interrupted = False
    writers = {k: stores[k].writer(expected_config(resolve(stores[k].name), weights.get(stores[k].name))) for k in plans}
    for w in writers.values():
        w.__enter__()
    try:
        for k, plan in plans.items():
            writers[k].delete_rows(plan.removed_rows)
            reports[k].removed = len(plan.removed_rows)
        try:
            _run_local(root, to_read, plans, maybe, encoders, writers, stores, reports, skipped,
                       batch_size, workers, progress)
        except KeyboardInterrupt:
            interrupted = True
    finally:
        for w in writers.values():
            w.__exit__(None, None, None)
    for k, r in reports.items():
        p = plans[k]
        r.unchanged = p.unchanged + r.unchanged
        stores[k].refresh()
        r.total = len(stores[k].items())
    st.write_skipped(skipped)
    report = EmbedReport(found=len(refs), models=list(reports.values()), skipped=skipped, metadata=meta_report,
                         interrupted=interrupted, load_seconds=t_embed - t_load, embed_seconds=time.perf_counter() - t_embed)
    if interrupted:
        raise EmbedInterrupted(report)
    _update_indexes(st, [stores[k].name for k in plans])
    return report


class EmbedInterrupted(KeyboardInterrupt):
    """Ctrl-C during embed, after finished batches were committed; carries the partial report."""

    def __init__(self, report: EmbedReport):
        super().__init__()
        self.report = report


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


def _run_local(root, to_read, plans, maybe, encoders, writers, stores, reports, skipped,
               batch_size, workers, progress):
    """Decode ahead in a thread pool; encode full batches; commit every few seconds."""
    specs = {k: enc.entry.preprocess for k, enc in encoders.items()}
    min_size = max((s.decode_size for s in specs.values()), default=0)
    old_rows = {k: _rows_by_id(stores[k]) for k in plans}
    pending: dict[str, list[Decoded]] = {k: [] for k in encoders}
    workers = workers or min(8, (os.cpu_count() or 2))
    total, done = len(to_read), 0
    last_commit = time.monotonic()

    def job(ref: ImageRef) -> Decoded:
        need = {k: s for k, s in specs.items() if ref.id in plans[k].todo or k in maybe.get(ref.id, {})}
        return process_file(root, ref, need, min_size, maybe.get(ref.id))

    def encode(k: str, batch: list[Decoded]) -> None:
        vectors = encoders[k].encode_pixels(np.stack([d.pixels[k] for d in batch]))
        writers[k].delete_rows([old_rows[k][d.ref.id] for d in batch if d.ref.id in old_rows[k]])
        writers[k].add(item_rows(batch), vectors)
        reports[k].embedded += len(batch)

    with ThreadPoolExecutor(max_workers=workers, initializer=_background_thread) as pool:
        # keep a bounded number of batches in flight so memory stays at a few batches of pixels
        for chunk in chunked(to_read, batch_size * 4):
            for d in pool.map(job, chunk):
                done += 1
                if d.error:
                    skipped.append((d.ref.path, d.error))
                    for k in plans:
                        if d.ref.id in old_rows[k]:  # a file that went bad: its old vector no longer applies
                            writers[k].delete_rows([old_rows[k][d.ref.id]])
                            reports[k].removed += 1
                    continue
                for k in plans:
                    if d.ref.id in plans[k].todo:
                        reports[k].new += 1
                    elif k in maybe.get(d.ref.id, {}):
                        if k in d.pixels:
                            reports[k].changed += 1
                        else:
                            reports[k].unchanged += 1
                for k in d.pixels:
                    pending[k].append(d)
                    if len(pending[k]) >= batch_size:
                        encode(k, pending[k])
                        pending[k] = []
                if progress:
                    progress(done, total)
            if time.monotonic() - last_commit >= COMMIT_SECONDS:
                for w in writers.values():
                    w.flush()
                last_commit = time.monotonic()
        for k, batch in pending.items():
            if batch:
                encode(k, batch)
        if progress:
            progress(total, total)


def _rows_by_id(ms) -> dict[str, int]:
    if not ms.exists():
        return {}
    items = ms.items()
    return dict(zip(items["id"], items["row"].astype(int)))


def _update_indexes(st: Store, names: Iterable[str]) -> None:
    """Keep existing indexes in step with the vectors (embed's last step)."""
    from . import index as index_mod

    for name in names:
        ms = st.model(name)
        if ms.manifest().get("index"):
            index_mod.update_index(ms)
