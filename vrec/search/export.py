"""Artefacts for downstream recommenders: the vectors themselves, and a "similar items" table.

Both stream shard by shard, so a store of millions of items is exported without holding all of
its vectors in memory.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vrec.base.errors import QueryError, check_number
from vrec.base.files import atomic_path
from vrec.base.records import csv_safe
from vrec.search.query import INTERNAL_COLUMNS
from vrec.store.catalog_table import catalog_table
from vrec.store.filters import apply_filters
from vrec.store.index import search_rows
from vrec.store.store import as_store

FORMATS = ("parquet", "npy", "csv")  # export: from OUT's extension, or --format
NEIGHBOUR_FORMATS = ("parquet", "csv")  # neighbours: from OUT's extension
STDOUT = "-"  # as OUT: CSV on standard output


@contextlib.contextmanager
def _csv_target(out):
    """Where CSV rows go: standard output for OUT '-', else a temporary file renamed over OUT."""
    if str(out) == STDOUT:
        yield sys.stdout
    else:
        with atomic_path(out) as tmp:
            yield tmp


def _one_of(formats: Sequence[str]) -> str:
    names = [f".{f}" for f in formats]
    return ", ".join(names[:-1]) + " or " + names[-1]


def output_format(out: str | os.PathLike, formats: Sequence[str], fmt: str | None = None, option: bool = True) -> str:
    """The format to write ``out`` in: its extension, or ``fmt`` (``--format``); neither means parquet.

    An unknown extension or ``fmt``, or a ``fmt`` that contradicts the extension (``x.csv --format
    parquet``), is refused before anything is read or written, so a file's name says what it holds.
    OUT '-' is standard output, in CSV (the one text format).
    """
    if str(out) == STDOUT:
        if fmt is not None and fmt.strip().lower().lstrip(".") != "csv":
            raise QueryError(f"OUT '-' writes to stdout, which takes CSV only (not {fmt}); drop --format, or give "
                             "a file name.")
        return "csv"
    suffix = Path(out).suffix.lstrip(".").lower()
    if fmt is not None:
        fmt = fmt.strip().lower().lstrip(".")
        if fmt not in formats:
            raise QueryError(f"Unknown format {fmt!r}; use one of: {', '.join(formats)}.")
        if suffix and suffix != fmt:
            raise QueryError(f"{str(out)!r} ends in .{suffix} but --format is {fmt}; name the file .{fmt} "
                             "or leave --format out.")
        return fmt
    if not suffix:
        return "parquet"
    if suffix not in formats:
        raise QueryError(f"Cannot write {str(out)!r}: .{suffix} files are not supported here; name the file "
                         f"{_one_of(formats)}" + (" (or give --format)." if option else "."))
    return suffix


def _live_items(store, model: str, what: str):
    """A model's store, its catalog table and the table's notes; a model without items is an error
    saying there is nothing to ``what``."""
    st = as_store(store)
    ms = st.model(model)
    notes: list[str] = []
    table = catalog_table(st, ms, notes)
    if not len(table):
        raise QueryError(f"Model {model!r} holds no items, so there is nothing to {what}; run "
                         f"'vrec embed FOLDER --model {model}' first.")
    return ms, table, notes


def _meta_columns(table) -> list[str]:
    return [c for c in table.columns if c not in INTERNAL_COLUMNS]


def export_vectors(out: str | os.PathLike, model: str = "siglip", store=None, fmt: str | None = None) -> dict:
    """Write a model's vectors with item ids and metadata, in the format OUT's extension names.

    ``fmt`` (``--format``) is for an OUT without extension; a model with no items is an error.
    Metadata columns named like vrec's own are written as ``meta_<name>`` (see ``catalog_table``).

    - parquet: one row per item, metadata columns plus ``vector`` (a list of float32);
    - npy: ``OUT`` holds float32 [n, dim]; ``OUT`` with ``.items.parquet`` in place of ``.npy``
      holds the ids and metadata of the same rows;
    - csv: metadata columns plus ``v0 .. v{dim-1}``.
    Returns what was written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    fmt = output_format(out, FORMATS, fmt)
    ms, table, notes = _live_items(store, model, "export")
    meta = table[_meta_columns(table)]
    dim, n = ms.dim, len(table)
    files = ["stdout" if str(out) == STDOUT else str(out)]
    offset = 0
    if fmt == "npy":
        side = out.with_name(out.name[: -len(out.suffix)] + ".items.parquet" if out.suffix else out.name + ".items.parquet")
        with atomic_path(out) as tmp, atomic_path(side) as side_tmp:  # both paths checked before writing either
            # written in order, not through a memory map: on a full disk a write fails with ENOSPC,
            # where a page of a map would kill the process (SIGBUS)
            with open(tmp, "wb") as f:
                header = np.lib.format.header_data_from_array_1_0(np.zeros((0, dim), np.float32))
                np.lib.format.write_array_header_1_0(f, {**header, "shape": (n, dim)})
                for _, vec in ms.iter_live():
                    f.write(np.ascontiguousarray(vec, np.float32).tobytes())
            meta.to_parquet(side_tmp, index=False)
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
            writer.close()
    else:
        import pandas as pd

        with _csv_target(out) as tmp:
            header = True
            for _, vec in ms.iter_live():
                part = meta.iloc[offset:offset + len(vec)].reset_index(drop=True)
                cols = pd.DataFrame(np.asarray(vec), columns=[f"v{i}" for i in range(dim)])
                csv_safe(pd.concat([part, cols], axis=1)).to_csv(tmp, mode="a", header=header, index=False)
                header = False
                offset += len(vec)
    return {"items": n, "dim": dim, "format": fmt, "files": files, "notes": notes}


def similar_items(out: str | os.PathLike, model: str = "siglip", store=None, k: int = 20,
                  filters: Sequence[str] = (), batch: int = 2048) -> dict:
    """Write the "similar items" table (item, rank, neighbour, score) for every item.

    OUT's extension picks the format: .parquet (also when it has none) or .csv. ``filters``
    restrict which items may be recommended (e.g. ``in_stock=yes``); every item still gets its
    list. ``k`` beyond the catalog gives every other item. New (cold-start) items are ordinary
    rows of the store, so they get neighbours like any other the moment they are embedded -- no
    interaction history needed.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    fmt = output_format(out, NEIGHBOUR_FORMATS, option=False)
    check_number("--k", k, min=1, integer=True)
    k = int(k)
    ms, table, notes = _live_items(store, model, "find neighbours for")
    rows = table["row"].to_numpy()
    ids = table["id"].astype(str).to_numpy()
    mask = apply_filters(table, filters)
    allowed = None if mask.all() else rows[mask]
    others = int(mask.sum()) - (1 if mask.all() else 0)  # candidates besides the item itself
    if k > others:  # no item can have more neighbours than that
        notes.append(f"--k {k} is more than the {others} items that may be recommended; each item gets all of them")
        k = max(others, 1)
    pos_of = dict(zip(rows.tolist(), range(len(rows))))
    schema = pa.schema([("item", pa.string()), ("rank", pa.int32()), ("neighbour", pa.string()), ("score", pa.float32())])
    written = 0
    with (atomic_path(out) if fmt == "parquet" else _csv_target(out)) as tmp:
        writer = pq.ParquetWriter(tmp, schema) if fmt == "parquet" else None
        try:
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
                part = pa.table({"item": items, "rank": ranks, "neighbour": nbrs, "score": vals}, schema=schema)
                if writer is not None:
                    writer.write_table(part)
                else:
                    csv_safe(part.to_pandas()).to_csv(tmp, mode="a", header=start == 0, index=False)
                written += len(items)
        finally:
            if writer is not None:
                writer.close()
    return {"items": len(rows), "rows": written, "k": k, "file": "stdout" if str(out) == STDOUT else str(out),
            "format": fmt, "notes": notes}
