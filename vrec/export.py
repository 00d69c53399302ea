"""Artefacts for downstream recommenders: the vectors themselves, and a "similar items" table.

Both stream shard by shard, so a store of millions of items is exported without holding all of
its vectors in memory.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import QueryError
from .filters import apply_filters
from .index import search_rows
from .search import catalog_table
from .store import atomic_path, as_store

FORMATS = ("parquet", "npy", "csv")


def _meta_columns(table) -> list[str]:
    return [c for c in table.columns if c not in ("row", "size", "mtime", "hash")]


def export_vectors(out: str | os.PathLike, model: str = "siglip", store=None, fmt: str | None = None) -> dict:
    """Write a model's vectors with item ids and metadata.

    - parquet: one row per item, metadata columns plus ``vector`` (a list of float32);
    - npy: ``OUT`` holds float32 [n, dim]; ``OUT`` with ``.items.parquet`` in place of ``.npy``
      holds the ids and metadata of the same rows;
    - csv: metadata columns plus ``v0 .. v{dim-1}``.
    Returns what was written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    st = as_store(store)
    ms = st.model(model)
    out = Path(out)
    fmt = fmt or (out.suffix.lstrip(".").lower() or "parquet")
    if fmt not in FORMATS:
        raise QueryError(f"Unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}.")
    table = catalog_table(st, ms)
    meta = table[_meta_columns(table)]
    dim, n = ms.dim, len(table)
    files = [str(out)]
    offset = 0
    if fmt == "npy":
        with atomic_path(out) as tmp:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
            for _, vec in ms.iter_live():
                mm[offset:offset + len(vec)] = vec
                offset += len(vec)
            mm.flush()
            del mm
        side = out.with_name(out.name[: -len(out.suffix)] + ".items.parquet" if out.suffix else out.name + ".items.parquet")
        with atomic_path(side) as tmp:
            meta.to_parquet(tmp, index=False)
        files.append(str(side))
    elif fmt == "parquet":
        with atomic_path(out) as tmp:
            writer = None
            for _, vec in ms.iter_live():
                part = meta.iloc[offset:offset + len(vec)].reset_index(drop=True)
                t = pa.Table.from_pandas(part, preserve_index=False)
                flat = pa.array(np.asarray(vec, np.float32).reshape(-1))
                t = t.append_column("vector", pa.FixedSizeListArray.from_arrays(flat, dim))
                writer = writer or pq.ParquetWriter(tmp, t.schema)
                writer.write_table(t)
                offset += len(vec)
            if writer is None:
                raise QueryError(f"Model {model!r} holds no vectors to export.")
            writer.close()
    else:
        import pandas as pd

        with atomic_path(out) as tmp:
            header = True
            for _, vec in ms.iter_live():
                part = meta.iloc[offset:offset + len(vec)].reset_index(drop=True)
                cols = pd.DataFrame(np.asarray(vec), columns=[f"v{i}" for i in range(dim)])
                pd.concat([part, cols], axis=1).to_csv(tmp, mode="a", header=header, index=False)
                header = False
                offset += len(vec)
    return {"items": n, "dim": dim, "format": fmt, "files": files}


def similar_items(out: str | os.PathLike, model: str = "siglip", store=None, k: int = 20,
                  filters: Sequence[str] = (), batch: int = 2048) -> dict:
    """Write the "similar items" table (item, rank, neighbour, score) for every item.

    ``filters`` restrict which items may be recommended (e.g. ``in_stock=yes``); every item still
    gets its list. New (cold-start) items are ordinary rows of the store, so they get neighbours
    like any other the moment they are embedded -- no interaction history needed.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if k < 1:
        raise QueryError("--k must be at least 1.")
    st = as_store(store)
    ms = st.model(model)
    table = catalog_table(st, ms)
    rows = table["row"].to_numpy()
    ids = table["id"].astype(str).to_numpy()
    mask = apply_filters(table, filters)
    allowed = None if mask.all() else rows[mask]
    pos_of = dict(zip(rows.tolist(), range(len(rows))))
    schema = pa.schema([("item", pa.string()), ("rank", pa.int32()), ("neighbour", pa.string()), ("score", pa.float32())])
    written = 0
    with atomic_path(out) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, len(rows), batch):
                q = np.arange(start, min(len(rows), start + batch))
                found, scores = search_rows(ms, ms.vectors_for_rows(rows[q]), k + 1, allowed_rows=allowed)
                items, ranks, nbrs, vals = [], [], [], []
                for i, p in enumerate(q):
                    lst = [(pos_of[int(r)], s) for r, s in zip(found[i], scores[i]) if pos_of[int(r)] != p][:k]
                    items += [ids[p]] * len(lst)
                    ranks += list(range(1, len(lst) + 1))
                    nbrs += [ids[j] for j, _ in lst]
                    vals += [float(s) for _, s in lst]
                writer.write_table(pa.table({"item": items, "rank": ranks, "neighbour": nbrs, "score": vals}, schema=schema))
                written += len(items)
    return {"items": len(rows), "rows": written, "k": k, "file": str(out)}
