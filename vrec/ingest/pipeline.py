"""The stages of an embed run, shared by every engine (``vrec.ingest.embed``'s local threads and
``vrec.ingest.ray_engine``'s Ray tasks): plan what each model needs, read + decode + preprocess a file,
and record vectors into the store with regular commits.

Engines import this module; it imports neither engine, so there is no import circle.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vrec.ingest.catalog import BadImage, ImageRef, Source, content_hash, decode_image
from vrec.models.preprocess import to_pixels
from vrec.store.store import ITEM_COLUMNS

# Finished batches are committed once this many seconds have passed since the last commit
# (checked after every model batch), and on Ctrl-C or kill: a hard kill loses at most this much
# finished work plus the batches in progress. docs/catalog.md states the same figure.
COMMIT_SECONDS = float(os.environ.get("VREC_COMMIT_SECONDS", "3"))


@dataclass
class ModelPlan:
    """What one model must do in this run."""

    todo: set[str] = field(default_factory=set)  # ids to embed (new)
    new: int = 0
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
    repaired: int = 0  # rows dropped because their shard file had gone missing (embedded again)


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

def plan_model(refs: Sequence[ImageRef], stats: dict[str, tuple[int, int]], items,
               verify: bool = False) -> tuple[ModelPlan, set[str]]:
    """Compare the catalog with a model's stored items.

    Returns the plan, and the ids whose size or mtime changed but which may still hold the same
    bytes (these are read and hashed before deciding). With ``verify``, every stored id is
    hashed again, whatever its size and mtime.
    """
    plan = ModelPlan()
    known = {r.id: r for r in items.itertuples(index=False)} if len(items) else {}
    maybe: set[str] = set()
    for ref in refs:
        old = known.get(ref.id)
        if old is None:
            plan.todo.add(ref.id)
            plan.new += 1
        elif not verify and old.path == ref.path and (int(old.size), int(old.mtime)) == stats[ref.id]:
            plan.unchanged += 1
        else:
            maybe.add(ref.id)
    present = {r.id for r in refs}
    plan.removed_rows = [int(r.row) for r in known.values() if r.id not in present]
    return plan, maybe


def process_file(source: Source, ref: ImageRef, specs: dict, min_size: int, known_hash: dict | None = None) -> Decoded:
    """Read, hash, decode and preprocess one file for the model keys in ``specs``.

    ``known_hash`` maps model key -> stored hash; models whose stored hash equals the file's are
    left out (the file was touched, not changed). Never raises for a bad file: the reason is
    returned in ``error``.
    """
    out = Decoded(ref)
    try:
        out.size, out.mtime = source.stat(ref)  # first: a file changed meanwhile then differs next run
        data = source.read(ref)
    except OSError as e:
        out.error = f"cannot read ({e.strerror or e})"
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
        [(d.ref.id, d.ref.path, d.hash, d.size, d.mtime, d.width, d.height, d.ref.product or d.ref.id,
          d.ref.position) for d in done], columns=ITEM_COLUMNS
    )


@dataclass
class Job:
    """Everything an engine needs: the source, which files to read, and for which models."""

    source: Source
    refs: list[ImageRef]
    to_read: list[ImageRef]
    plans: dict  # model key -> ModelPlan
    maybe: dict  # id -> {model key: stored hash}
    specs: dict  # model key -> PreprocessSpec
    names: dict  # model key -> model name

    def needs(self, ref: ImageRef) -> dict:
        """Model key -> preprocessing spec for the models that may need this file."""
        return {k: s for k, s in self.specs.items() if ref.id in self.plans[k].todo or k in self.maybe.get(ref.id, {})}

    @property
    def min_size(self) -> int:
        return max((s.decode_size for s in self.specs.values()), default=0)

    def process(self, ref: ImageRef) -> Decoded:
        return process_file(self.source, ref, self.needs(ref), self.min_size, self.maybe.get(ref.id))


class Recorder:
    """Driver-side bookkeeping shared by every engine: counts, skipped files, and store writes.

    Engines hand it decoded files (:meth:`accept`) and vectors (:meth:`write`); it commits the
    store every few seconds (:meth:`tick`) so that finished work survives an interruption.
    """

    def __init__(self, job: Job, stores: dict, writers: dict):
        self.job, self.stores, self.writers = job, stores, writers
        self.reports = {k: ModelReport(model=stores[k].name) for k in job.plans}
        self.skipped: list[tuple[str, str]] = []
        self.repeats: list[tuple[str, str]] = []  # (photo, the photo of its product with the same bytes)
        self.old_rows = {k: rows_by_id(stores[k]) for k in job.plans}
        self.seen = _product_hashes(stores, job)
        self.last_commit = time.monotonic()
        for k, plan in job.plans.items():
            writers[k].delete_rows(plan.removed_rows)
            self.reports[k].removed = len(plan.removed_rows)

    def accept(self, d: Decoded) -> list[str]:
        """Record one processed file; returns the model keys whose vectors it still needs."""
        if d.error:
            self.skipped.append((d.ref.path, d.error))
            for k in self.job.plans:
                if d.ref.id in self.old_rows[k]:  # a file that went bad: its old vector no longer applies
                    self.writers[k].delete_rows([self.old_rows[k][d.ref.id]])
                    self.reports[k].removed += 1
            return []
        product = d.ref.product or d.ref.id
        first = self.seen.setdefault((product, d.hash), d.ref.id)
        if first != d.ref.id:  # the same bytes as another photo of the product: nothing new to embed
            self.repeats.append((d.ref.path, first))
            return []
        need = []
        for k in self.job.plans:
            if d.ref.id in self.job.plans[k].todo:
                self.reports[k].new += 1
                need.append(k)
            elif k in self.job.maybe.get(d.ref.id, {}):
                if self.job.maybe[d.ref.id][k] != d.hash:
                    self.reports[k].changed += 1
                    need.append(k)
                else:
                    self.reports[k].unchanged += 1
        return need

    def write(self, k: str, done: Sequence[Decoded], vectors: np.ndarray) -> None:
        old = self.old_rows[k]
        self.writers[k].delete_rows([old[d.ref.id] for d in done if d.ref.id in old])
        self.writers[k].add(item_rows(done), vectors)
        self.reports[k].embedded += len(done)
        self.tick()  # after every batch: a hard kill loses at most COMMIT_SECONDS of finished work

    def tick(self) -> None:
        if time.monotonic() - self.last_commit >= COMMIT_SECONDS:
            for w in self.writers.values():
                w.flush()
            self.last_commit = time.monotonic()


def _product_hashes(stores: dict, job: Job) -> dict[tuple[str, str], str]:
    """(product, content hash) -> photo id, for the photos already stored that this run keeps as they
    are (same id, same location, not read again): a photo read now repeats one of those, or none.
    A photo that moved (a feed whose photos changed order) is not among them."""
    read_now = {r.id for r in job.to_read}
    keep = {r.id: r.path for r in job.refs if r.id not in read_now}
    seen: dict = {}
    for ms in stores.values():
        if ms.exists():
            items = ms.items()
            for i, path, p, h in zip(items["id"], items["path"], items["product"], items["hash"]):
                if keep.get(i) == path:
                    seen.setdefault((p, h), i)
    return seen


def rows_by_id(ms) -> dict[str, int]:
    if not ms.exists():
        return {}
    items = ms.items()
    return dict(zip(items["id"], items["row"].astype(int)))
