"""Products of several photos: one model's vectors seen product by product.

A feed's product has several photos (a packshot, the back, photos in a shop); each photo is
embedded and kept as a row of the model store, with its ``product`` and ``position``. Every
question a user asks is about products, so :class:`ProductStore` wraps a model store with the
same interface, one row per product:

- ``items()``: one row per product (in the order of its first photo), its main photo's
  path, size and dimensions, and ``photos``, how many it has;
- ``vectors()``: each product's vector, the normalised mean of its photos' vectors;
- ``search_products()``: the k best products for query vectors, each with the photo that matched
  best, scored by ``scoring``:

  - ``mean`` (the default): a product scores as its mean vector (one vector per product);
  - ``max``: a product scores as its best-matching photo. The photo-level search is grouped by
    product, fetching more photos until k distinct products are found (as Qdrant's grouping
    search does);
  - ``main``: only each product's main photo (position 1, the packshot) is searched.

  BENCHMARKS.md ("Products: how to score a product of several photos") holds the
  measurement behind the default.
"""
from __future__ import annotations

import numpy as np

from vrec.base.errors import QueryError

SCORINGS = ("max", "mean", "main")
DEFAULT_SCORING = "mean"
OVERFETCH = 4  # photos fetched per product wanted, at first (then 4 times more, until k products are found)


def check_scoring(scoring: str) -> str:
    if scoring not in SCORINGS:
        raise QueryError(f"Unknown --product-score {scoring!r}; use max (a product scores as its best photo), "
                         "mean (as the mean of its photos) or main (its main photo only).")
    return scoring


class ProductStore:
    """A model store seen one product per row (the model store itself is ``photos``).

    Everything not defined here (name, path, manifest, config, dim, generation, check_config...)
    is the model store's own.
    """

    grain = "product"

    def __init__(self, photos, scoring: str = DEFAULT_SCORING):
        self.photos = photos
        self.scoring = check_scoring(scoring)

    def __getattr__(self, name: str):
        if name == "photos":  # not set yet (copy, unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.photos, name)

    def with_scoring(self, scoring: str | None) -> ProductStore:
        return self if scoring is None or scoring == self.scoring else ProductStore(self.photos, scoring)

    # -- the product table --
    def _groups(self) -> dict:
        """The photo table and, per photo, its product's row; per product, its main photo; cached with
        the manifest."""
        cache = self.photos._cache
        self.photos.manifest()
        if "product_groups" not in cache:
            photos = self.photos.items()
            codes, names = _codes(photos["product"].astype(str).to_numpy())
            order = np.lexsort((photos["position"].to_numpy(), codes))  # by product, main photo first
            starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]]) if len(order) else order
            by_row = np.full(self.photos.total_rows, -1, np.int64)  # global photo row -> product (-1: removed)
            by_row[photos["row"].to_numpy()] = codes
            cache["product_groups"] = {"photos": photos, "product_of": codes, "names": names, "order": order,
                                       "starts": starts, "main": order[starts], "by_row": by_row,
                                       "counts": np.diff(np.r_[starts, len(order)])}
        return cache["product_groups"]

    def items(self):
        """One row per product: id (the product), path, hash, size, mtime, width, height (its main
        photo's), product, position, photos (how many), row (the product's number)."""
        cache = self.photos._cache
        if "product_items" not in cache:
            g = self._groups()
            table = g["photos"].iloc[g["main"]].copy()
            table["id"] = g["names"]
            table["photos"] = g["counts"]
            table["row"] = np.arange(len(table), dtype=np.int64)
            cache["product_items"] = table.reset_index(drop=True)
        return cache["product_items"]

    def __len__(self) -> int:
        saved = self._saved()
        return int(saved["products"]) if saved else len(self._groups()["names"])

    def _layout(self) -> dict:
        """Each product's photos: ``rows_by_product`` (global photo rows, product by product, main
        photo first), ``starts`` and ``counts`` per product. From the saved copy when current (a
        one-off query then reads no photo table), else from the photo table."""
        cache = self.photos._cache
        self.photos.manifest()
        if "product_layout" not in cache:
            saved = self._saved()
            if saved and saved.get("photo_rows"):
                rows = np.load(self._dir() / saved["photo_rows"], mmap_mode="r")
                starts = np.load(self._dir() / saved["photo_starts"])
                layout = {"rows_by_product": rows, "starts": starts, "counts": np.diff(np.r_[starts, len(rows)])}
            else:
                g = self._groups()
                layout = {"rows_by_product": g["photos"]["row"].to_numpy()[g["order"]], "starts": g["starts"],
                          "counts": g["counts"]}
            cache["product_layout"] = layout
        return cache["product_layout"]

    @property
    def total_rows(self) -> int:
        return len(self)

    def photo_rows(self, products) -> list[np.ndarray]:
        """Each product's photos, as global rows of the model store (main photo first)."""
        lay = self._layout()
        rows, starts, counts = lay["rows_by_product"], lay["starts"], lay["counts"]
        return [np.asarray(rows[starts[p]:starts[p] + counts[p]]) for p in np.asarray(products, np.int64)]

    # -- vectors --
    def vectors(self) -> np.ndarray:
        """Each product's vector (the normalised mean of its photos'), in ``items()`` order: read from
        the saved copy when it is current (``save_products``), else computed from the photos."""
        cache = self.photos._cache
        if "product_vectors" not in cache:
            saved = self._saved()
            cache["product_vectors"] = (np.load(self._dir() / saved["vectors"], mmap_mode="r") if saved
                                        else self.mean_vectors())
        return cache["product_vectors"]

    def mean_vectors(self) -> np.ndarray:
        """Each product's vector computed from its photos' vectors, one shard at a time."""
        g = self._groups()
        sums = np.zeros((len(g["names"]), self.photos.dim), np.float64)
        start = 0
        for _, vec in self.photos.iter_live():
            np.add.at(sums, g["product_of"][start:start + len(vec)], np.asarray(vec, np.float64))
            start += len(vec)
        return _unit(sums)

    def _dir(self):
        return self.photos.path / "products"

    def _saved(self) -> dict | None:
        """products.json when it describes the current vectors (else None: they changed since)."""
        from vrec.base.files import read_json

        self.photos.manifest()
        cache = self.photos._cache  # read once per manifest
        if "products_saved" not in cache:
            p = self._dir() / "products.json"
            try:
                saved = read_json(p) if p.is_file() else None
            except (OSError, ValueError):
                saved = None
            current = saved and saved.get("generation") == self.photos.generation  # every commit changes it
            cache["products_saved"] = saved if current else None
        return cache["products_saved"]

    def vectors_for_rows(self, rows) -> np.ndarray:
        """Product vectors by product row, reading only those products' photos."""
        rows = np.asarray(rows, np.int64)
        if "product_vectors" in self.photos._cache:
            return self.vectors()[rows]
        out = [self.photos.vectors_for_rows(r).astype(np.float64).sum(0) for r in self.photo_rows(rows)]
        return _unit(np.array(out).reshape(len(rows), self.photos.dim))

    def iter_live(self):
        yield np.arange(len(self), dtype=np.int64), self.vectors()

    def shards(self):
        raise TypeError("a ProductStore has no shards: use its .photos")

    # -- search --
    def search_products(self, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None = None,
                        with_photos: bool = True):
        """The k best products for each query: (product rows, scores, best photo rows), each
        [queries, <=k], by ``self.scoring``. ``allowed_rows``: the products that may be returned.
        Without ``with_photos``, mean scoring leaves the best photos out (None)."""
        queries = np.atleast_2d(queries).astype(np.float32, copy=False)
        if self.scoring == "mean":
            return self._search_mean(queries, k, allowed_rows, with_photos)
        return self._search_photos(queries, k, allowed_rows)

    def search(self, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None = None):
        """``search_products`` without the photos: what ``vrec.store.index.search_rows`` answers."""
        rows, scores, _ = self.search_products(queries, k, allowed_rows, with_photos=False)
        return rows, scores

    def _search_mean(self, queries, k, allowed_rows, with_photos: bool):
        from vrec.store.index import EXACT_BELOW, exact_topk

        index = self._index() if allowed_rows is None and len(self) >= EXACT_BELOW else None
        if index is not None and k <= len(self):
            index.set_ef(max(self._saved()["ef"], k))
            rows, dist = index.knn_query(queries, k=k)
            rows = rows.astype(np.int64)
            return rows, (1.0 - dist).astype(np.float32), self._best_photos(queries, rows) if with_photos else None
        candidates = np.arange(len(self), dtype=np.int64) if allowed_rows is None else np.asarray(allowed_rows, np.int64)
        vectors = self.vectors() if allowed_rows is None else self.vectors()[candidates]
        pos, scores = exact_topk(vectors, queries, k)
        rows = candidates[pos]
        return rows, scores, self._best_photos(queries, rows) if with_photos else None

    def _index(self):
        """The saved HNSW index of the product vectors when it is current, loaded once per manifest."""
        cache = self.photos._cache
        if "product_hnsw" not in cache:
            saved = self._saved()
            index = None
            if saved and saved.get("index"):
                import hnswlib

                index = hnswlib.Index(space="ip", dim=self.photos.dim)
                index.load_index(str(self._dir() / saved["index"]), max_elements=max(len(self), 1))
                index.set_ef(saved["ef"])
            cache["product_hnsw"] = index
        return cache["product_hnsw"]

    def best_photos(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For each query (a row of ``queries``) and each of its products (``rows[query]``, product
        rows), the global row of the product's photo closest to the query."""
        return self._best_photos(np.atleast_2d(queries).astype(np.float32, copy=False), np.atleast_2d(rows))

    def _best_photos(self, queries, rows) -> np.ndarray:
        """For each query and product found, the product's photo closest to the query (the first
        in main-photo-first order on a tie): every photo of every product found is read in one
        go and scored against its query, without a Python loop per product."""
        g = self._layout()
        flat = np.asarray(rows, np.int64).ravel()
        if not len(flat):
            return np.zeros(rows.shape, np.int64)
        lens = g["counts"][flat]
        seg_start = np.cumsum(lens) - lens  # each product's first photo in the gathered list
        offs = np.repeat(g["starts"][flat] - seg_start, lens) + np.arange(int(lens.sum()))
        photo_rows = np.asarray(g["rows_by_product"][offs])
        segment = np.repeat(np.arange(len(flat)), lens)
        query_of = segment // rows.shape[1]
        scores = np.einsum("ij,ij->i", self._photo_vectors(photo_rows), queries[query_of])
        best = np.lexsort((-scores, segment))[seg_start]  # stable: ties keep main-photo-first order
        return photo_rows[best].reshape(rows.shape)

    def _photo_vectors(self, rows: np.ndarray) -> np.ndarray:
        """Photo vectors by global row, from memory maps of the shards opened once per manifest
        (``ModelStore.vectors_for_rows`` opens every shard again at each call, which costs more
        than the rest of a query's best photos on a store of several shards)."""
        self.photos.manifest()
        g = self.photos._cache
        if "shard_maps" not in g:
            shards = self.photos.shards()
            g["shard_maps"] = [self.photos.shard_vectors(s) for s in shards]
            g["shard_starts"] = np.cumsum([0] + [s.rows for s in shards])
        starts = g["shard_starts"]
        out = np.empty((len(rows), self.photos.dim), np.float32)
        which = np.searchsorted(starts, rows, side="right") - 1
        for i in np.unique(which):
            sel = which == i
            out[sel] = g["shard_maps"][i][rows[sel] - starts[i]]
        return out

    def _photo_candidates(self, allowed_rows) -> np.ndarray | None:
        """The photo rows that may match (None: all of them)."""
        g = self._groups()
        if self.scoring != "main" and allowed_rows is None:
            return None
        keep = np.ones(len(g["product_of"]), bool)
        if self.scoring == "main":
            keep[:] = False
            keep[g["main"]] = True
        if allowed_rows is not None:
            keep &= np.isin(g["product_of"], np.asarray(allowed_rows, np.int64))
        return g["photos"]["row"].to_numpy()[keep]

    def _search_photos(self, queries, k, allowed_rows):
        """Products by their best photo: the photo-level search, grouped, fetching more photos until
        k distinct products are found (or every candidate photo was seen)."""
        from vrec.store.index import search_rows

        g = self._groups()
        candidates = self._photo_candidates(allowed_rows)
        n = len(g["product_of"]) if candidates is None else len(candidates)
        by_row = g["by_row"]
        k = min(k, len(np.unique(by_row[candidates])) if candidates is not None else len(g["names"]))
        out = [np.zeros((len(queries), k), np.int64), np.zeros((len(queries), k), np.float32),
               np.zeros((len(queries), k), np.int64)]
        fetch = min(n, k * OVERFETCH)
        todo = np.arange(len(queries))
        while len(todo) and k:
            rows, scores = search_rows(self.photos, queries[todo], fetch, allowed_rows=candidates)
            unfinished = []
            for i, q in enumerate(todo):
                found = _first_per_product(rows[i], scores[i], by_row, k)
                if len(found) < k and fetch < n:
                    unfinished.append(q)
                    continue
                for c, values in enumerate(zip(*found)):
                    out[c][q, :len(values)] = values
            todo, fetch = np.array(unfinished, np.int64), min(n, fetch * OVERFETCH)
        return out[0], out[1], out[2]


def _first_per_product(rows, scores, by_row: np.ndarray, k: int) -> list[tuple[int, float, int]]:
    """(product, score, photo) for the first photo of each product in a ranked photo list, up to k."""
    seen: dict[int, None] = {}
    found = []
    for r, s, p in zip(rows.tolist(), scores.tolist(), by_row[rows].tolist()):
        if p not in seen:
            seen[p] = None
            found.append((p, s, r))
            if len(found) == k:
                break
    return found


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Product numbers in order of first appearance, and the product ids in that order."""
    if not len(values):
        return np.zeros(0, np.int64), np.array([], dtype=object)
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    return rank[inverse], uniq[np.argsort(first, kind="stable")]


def _unit(m: np.ndarray) -> np.ndarray:
    return (m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def save_products(ps: ProductStore, index: bool = False, m: int = 16, ef_construction: int = 200,
                  target_recall: float = 0.99, seed: int = 0) -> dict:
    """Save the product vectors (so that queries need not average the photos again) and, with
    ``index``, an HNSW index over them with ``ef`` tuned to the target recall@10, as
    ``vrec.store.index`` does for photos. Returns what products.json records."""
    import time

    from vrec.base.files import atomic_path, now, write_json, write_npy
    from vrec.store.index import EF_LADDER, exact_topk, tuning_queries

    t0 = time.perf_counter()
    vec = ps.mean_vectors()
    gen = ps.photos.generation
    d = ps._dir()
    d.mkdir(parents=True, exist_ok=True)
    entry = {"generation": gen, "products": len(vec), "vectors": f"vectors-{gen:08d}.npy", "saved": now(),
             "photo_rows": f"photo-rows-{gen:08d}.npy", "photo_starts": f"photo-starts-{gen:08d}.npy"}
    write_npy(d / entry["vectors"], vec)
    g = ps._groups()  # each product's photos, so that a query reads no photo table
    write_npy(d / entry["photo_rows"], g["photos"]["row"].to_numpy()[g["order"]].astype(np.int64))
    write_npy(d / entry["photo_starts"], np.asarray(g["starts"], np.int64))
    if index and len(vec):
        import hnswlib

        hnsw = hnswlib.Index(space="ip", dim=vec.shape[1])
        hnsw.init_index(max_elements=len(vec), ef_construction=ef_construction, M=m, random_seed=seed)
        hnsw.add_items(vec, np.arange(len(vec)))
        queries = tuning_queries(np.arange(len(vec)), lambda r: vec[r], 200, seed)
        k = min(10, len(vec))
        truth, _ = exact_topk(vec, queries, k)
        for ef in EF_LADDER:
            hnsw.set_ef(max(ef, k))
            labels, _ = hnsw.knn_query(queries, k=k)
            recall = sum(len(set(a) & set(b)) for a, b in zip(labels.tolist(), truth.tolist())) / truth.size
            if recall >= target_recall:
                break
        entry.update({"index": f"hnsw-{gen:08d}.bin", "ef": int(max(ef, k)), "recall_at_10": round(recall, 4),
                      "m": m, "ef_construction": ef_construction})
        with atomic_path(d / entry["index"]) as tmp:
            hnsw.save_index(tmp)
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    write_json(d / "products.json", entry)
    for f in d.iterdir():  # older copies
        if f.name not in ("products.json", entry["vectors"], entry["photo_rows"], entry["photo_starts"], entry.get("index")):
            f.unlink(missing_ok=True)
    for key in ("product_vectors", "product_hnsw", "product_layout", "products_saved"):
        ps.photos._cache.pop(key, None)
    return entry
