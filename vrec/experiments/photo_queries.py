"""``vrec eval --query-photos FILE``: a shopper's photo -> its product.

The file lists photos that are not in the catalog (taken in a shop, by a customer) and the product
each one shows: CSV columns ``photo`` (a path, relative to the file's folder) and ``product_id``
(``path``/``image`` and ``product``/``id`` are accepted too). Each photo queries the catalog's
products; the one relevant result is its product. Reported per model and per product scoring
(``max``, ``mean``, ``main``: see ``vrec.store.products``): hit@k (the share of photos whose product
is in the top k) and MRR over the top ``MRR_DEPTH`` products, with 95% bootstrap intervals; and
for every two scorings of one model the paired difference, photo by photo.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vrec.base.errors import QueryError
from vrec.experiments.metrics import Metric, bootstrap_ci, paired_difference, reciprocal_rank

PHOTO_COLUMNS = ("photo", "path", "image", "file")
PRODUCT_COLUMNS = ("product_id", "product", "id")
MRR_DEPTH = 100  # ranks beyond this count as not found (reciprocal rank 0)
BATCH = 32


def read_query_photos(path, notes: list[str]):
    """(photo paths, product ids) from a query photo file; a photo that is missing is left out with a note."""
    from vrec.ingest.metadata import read_csv_file

    df = read_csv_file(path, "Query photo file", "list", "give a CSV with the columns photo and product_id", notes,
                       dtype=str)
    cols = {c.lower(): c for c in df.columns}
    photo = next((cols[c] for c in PHOTO_COLUMNS if c in cols), None)
    product = next((cols[c] for c in PRODUCT_COLUMNS if c in cols), None)
    if photo is None or product is None:
        raise QueryError(f"Query photo file {str(path)!r} needs a 'photo' and a 'product_id' column (it has "
                         f"{', '.join(map(str, df.columns))}).")
    df = df.dropna(subset=[photo, product])
    base = Path(path).resolve().parent
    paths = [str(base / p) for p in df[photo]]
    found = [Path(p).is_file() for p in paths]
    if not all(found):
        notes.append(f"{found.count(False)} query photos do not exist and are left out (e.g. {paths[found.index(False)]!r})")
    return [p for p, f in zip(paths, found) if f], [str(v).strip() for v, f in zip(df[product], found) if f]


def encode_photos(enc, paths: Sequence[str], notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of the query photos decoded as catalog photos are, and which ones could be used."""
    from vrec.ingest.catalog import BadImage, load_image

    vectors, usable = [], np.ones(len(paths), bool)
    for start in range(0, len(paths), BATCH):
        images = []
        for i in range(start, min(len(paths), start + BATCH)):
            try:
                images.append(load_image(paths[i], min_size=enc.preprocess_spec.decode_size))
            except BadImage:
                usable[i] = False
        if images:
            vectors.append(enc.encode_images(images))
    if not usable.all():
        notes.append(f"{int((~usable).sum())} query photos cannot be decoded and are left out")
    return (np.concatenate(vectors) if vectors else np.zeros((0, 1), np.float32)), usable


def first_ranks(ms, queries: np.ndarray, wanted: np.ndarray, depth: int) -> np.ndarray:
    """1-based rank of each query's product among the model's products (0: not in the top ``depth``)."""
    from vrec.store.index import search_rows

    rows, _ = search_rows(ms, queries, min(depth, len(ms)))
    hit = rows == wanted[:, None]
    return np.where(hit.any(1), hit.argmax(1) + 1, 0)


def photo_query_eval(ev, m: str, ms, enc, photos: tuple[list[str], list[str]], scorings: Sequence[str],
                     ks: Sequence[int], n_boot: int, seed: int) -> None:
    """Append model ``m``'s photo->product figures for each scoring to ``ev`` (metrics and comparisons)."""
    paths, products = photos
    table = ms.items()
    number = dict(zip(table["id"].astype(str), table["row"].astype(int)))
    known = np.array([p in number for p in products], bool)
    if not known.all():
        ev.notes.append(f"{int((~known).sum())} query photos name a product the catalog does not hold and are left out")
    qv, usable = encode_photos(enc, [p for p, k in zip(paths, known) if k], ev.notes)
    wanted = np.array([number[p] for p, k in zip(products, known) if k], np.int64)[usable]
    if not len(wanted):
        raise QueryError("No query photo can be evaluated: none shows a product of the catalog.")
    if not hasattr(ms, "with_scoring") and len(scorings) > 1:
        ev.notes.append(f"{m}: every product has one photo, so all product scorings are the same")
        scorings = scorings[:1]
    per_scoring = {}
    for s in scorings:
        first = first_ranks(ms.with_scoring(s) if hasattr(ms, "with_scoring") else ms, qv, wanted, MRR_DEPTH)
        rows = [("hit", k, ((first > 0) & (first <= k)).astype(np.float64)) for k in ks]
        rows.append(("mrr", None, reciprocal_rank(first)))
        for metric, k, v in rows:
            ev.metrics.append(Metric("photo", s, metric, k, m, float(v.mean()), bootstrap_ci(v, n_boot, seed), len(v), v))
        per_scoring[s] = rows
    for a, b in itertools.combinations(per_scoring, 2):
        for (metric, k, va), (_, _, vb) in zip(per_scoring[a], per_scoring[b]):
            res = paired_difference(va, vb, n_boot, seed)
            res.update({"task": "photo", "label": f"{a} − {b}", "metric": metric, "k": k, "model": m,
                        "first": a, "second": b, "winner": {"first": a, "second": b, "tie": "tie"}[res["winner"]]})
            ev.scoring_comparisons.append(res)
    ev.notes.append(f"photo->product: {len(wanted)} query photos; MRR over the top {MRR_DEPTH} products")
