"""Only the rows and columns of the catalog table that one query needs.

``catalog_table`` joins every live item with its metadata and tags: what a long-lived process
(``vrec serve``) keeps in memory, but for a one-off query it is most of the work, and it grows with
the catalog. :class:`CatalogRows` answers the same table piece by piece:

- ``take(positions)``: whole rows (a query's k results), read from the parquet row groups that
  hold them in the item shards and ``metadata.parquet`` (both written in row groups of
  ``ROW_GROUP_ROWS``; files written before are read whole, still correct);
- ``frame(columns)``: a few columns of every row (what ``--filter`` or ``--collapse`` names).

Both read the files ``catalog_table`` reads and join them the same way, so what they answer is
the whole table's rows, with its column names, order and types. What k rows cannot tell is saved,
once per change of the catalog, in a *lookup* beside the shards (``models/<model>/catalog/``):
for each row of the table the store row of its photo (a product's: its main photo), its row in
``metadata.parquet`` (-1: none) and, for products, its number of photos; and what the whole join
decided (metadata columns renamed or left out, with the notes saying so; whether some item has no
metadata, which turns whole-number metadata columns into floats; the column order). The first query
after a change builds it from the whole table, as every query did before; in a store that cannot
be written it lives for that process only.

:class:`TableRows` answers the same questions from a table in memory (the web app's snapshot).
"""
from __future__ import annotations

import json
import time

import numpy as np

from vrec.store.catalog_table import catalog_table, clashes, file_key
from vrec.store.store import ModelStore, Store

LOOKUP_VERSION = 1


class TableRows:
    """The catalog table in memory, answering as :class:`CatalogRows` does."""

    def __init__(self, table, notes: list[str] = ()):
        self.table, self.notes = table, list(notes)
        self.columns = list(table.columns)

    def __len__(self) -> int:
        return len(self.table)

    def frame(self, columns):
        """Some columns of every row, and ``row``."""
        return self.table[list(dict.fromkeys([*columns, "row"]))]

    def take(self, positions):
        return self.table.iloc[list(positions)].reset_index(drop=True)

    def positions(self, rows) -> list[int]:
        """Positions in the table of index rows (store rows; product rows for products)."""
        return positions_of(self.table["row"].to_numpy(), rows)


class CatalogRows:
    """The catalog table of a model read piecewise, through its saved lookup (see the module)."""

    def __init__(self, st: Store, ms: ModelStore, lookup: dict, arrays: dict):
        self.st, self.ms = st, ms
        self.photo_store = getattr(ms, "photos", ms)
        self.products = getattr(ms, "grain", "photo") == "product"
        self.columns: list[str] = lookup["columns"]
        self.notes: list[str] = lookup["notes"]
        self._renames, self._dropped = lookup["renames"], lookup["dropped"]
        self._meta_columns, self._missing_meta = lookup["meta_columns"], lookup["missing_meta"]
        self._rows, self._meta, self._photos = arrays["rows"], arrays["meta"], arrays.get("photos")

    def __len__(self) -> int:
        return len(self._rows)

    def positions(self, rows) -> list[int]:
        """Positions in the table of index rows: a product's row is its position; photos are in
        store order, so their rows ascend (checked when the lookup was built)."""
        rows = np.asarray(rows, np.int64)
        return (rows if self.products else np.searchsorted(self._rows, rows)).tolist()

    # -- whole rows: a query's results --
    def take(self, positions):
        """The table's rows at ``positions``, in that order."""
        pos = np.asarray(positions, np.int64)
        table = self.photo_store.items_at(self._rows[pos])
        if self.products:
            table["id"] = table["product"].astype(str)
            table["row"] = pos
            table["photos"] = self._photos[pos]
        if self._meta_columns:
            table = table.join(self._metadata(self._meta[pos]))
        return self._with_tags(table)[self.columns]

    # -- whole columns: what filters name --
    def frame(self, columns):
        """Some columns of every row, and ``row``, reading only those columns."""
        import pandas as pd

        wanted = list(dict.fromkeys([*columns, "row"]))
        meta = [c for c in wanted if c in self._meta_columns]
        own = [c for c in wanted if c not in meta and c != "tags"] + (["id"] if "tags" in wanted else [])
        table = self._own_columns(list(dict.fromkeys(own)))
        if meta:
            table = pd.concat([table, self._metadata(self._meta, meta)], axis=1)
        if "tags" in wanted:
            table = self._with_tags(table)
        return table[[c for c in self.columns if c in wanted]]

    def _own_columns(self, columns: list[str]):
        """vrec's columns (id, path, width, height, photos, row...) of every row of the table."""
        import pandas as pd

        if columns == ["row"]:  # nothing to read
            return pd.DataFrame({"row": np.arange(len(self), dtype=np.int64) if self.products else self._rows})
        if not self.products:
            return self.photo_store.read_items(columns)
        photo_columns = [c for c in columns if c not in ("id", "photos", "row")]
        photos = self.photo_store.read_items(list(dict.fromkeys(photo_columns + ["product"])))
        at = np.searchsorted(photos["row"].to_numpy(), self._rows)  # each product's main photo
        table = photos.iloc[at].reset_index(drop=True)
        table["id"] = table["product"].astype(str)
        table["photos"] = np.asarray(self._photos)
        table["row"] = np.arange(len(table), dtype=np.int64)
        return table[columns]

    # -- metadata and tags, joined as catalog_table joins them --
    def _metadata(self, meta_rows: np.ndarray, columns: list[str] | None = None):
        """Metadata columns (as the table names them) for metadata rows ``meta_rows`` (-1: none), one
        row each, indexed 0..n-1."""
        from vrec.base.files import read_parquet_rows

        back = {new: old for old, new in self._renames.items()}
        names = [back.get(c, c) for c in (columns or self._meta_columns)]
        meta_rows = np.asarray(meta_rows, np.int64)
        have = np.unique(meta_rows[meta_rows >= 0])
        meta = read_parquet_rows(self.st.path / "metadata.parquet", have, names)
        at = np.where(meta_rows >= 0, np.searchsorted(have, meta_rows), -1)
        # reindex, like the whole table's join, fills a row without metadata (label -1) with NaN
        # and so turns integer columns into floats, booleans into objects. When the whole table has
        # such a row but these rows do not, one is added first and dropped after, so that the types
        # are the whole table's.
        pad = self._missing_meta and not (at < 0).any()
        out = meta.reindex(np.r_[-1, at] if pad else at)
        out = out.iloc[1:] if pad else out
        return out.rename(columns=self._renames).reset_index(drop=True)

    def _with_tags(self, table):
        """``table`` with its items' saved tags, as ``catalog_table`` adds them (when there are any)."""
        if "tags" not in self.columns:
            return table
        import pandas as pd

        ids = table["id"].astype(str).unique().tolist()
        if len(table) > 10_000:  # a whole column: reading the whole file is as quick
            tags = self.st.tags()
        else:
            found = pd.read_parquet(self.st.path / "tags.parquet", filters=[("id", "in", ids)])
            tags = found.groupby("id", sort=False)["tag"].agg(", ".join)
        table = table.join(tags.rename("tags"), on="id")
        table["tags"] = table["tags"].fillna("")
        return table


def catalog_rows(st: Store, ms: ModelStore, notes: list | None = None):
    """The catalog table of one query: :class:`CatalogRows` from the saved lookup (built now when
    the catalog changed since), or a :class:`TableRows` of the whole table for a store kept in memory
    (``Store.keeps_tables``: the web app's) or a catalog the lookup cannot describe (metadata with
    repeated ids). Its notes (renamed metadata columns) are added to ``notes``."""
    if getattr(st, "keeps_tables", False):
        rows = None
    else:
        rows = _open_lookup(st, ms)
    if rows is None:
        table_notes: list[str] = []
        rows = TableRows(catalog_table(st, ms, table_notes), table_notes)
    if notes is not None:
        notes.extend(rows.notes)
    return rows


def positions_of(table_rows: np.ndarray, rows) -> list[int]:
    """Positions in a table (its ``row`` column) of index rows: a binary search, since tables keep
    store order (rows ascend), so a query over a large catalog does not build a dict of every row."""
    rows = np.asarray(rows, np.int64)
    pos = np.searchsorted(table_rows, rows)
    found = (pos < len(table_rows)).all() and np.array_equal(table_rows[np.minimum(pos, len(table_rows) - 1)], rows)
    if not found:
        pos_of = dict(zip(table_rows.tolist(), range(len(table_rows))))  # not in store order after all
        return [pos_of[int(r)] for r in rows]
    return [int(p) for p in pos]


# -- the saved lookup --------------------------------------------------------------------------

def _grain(ms) -> str:
    return getattr(ms, "grain", "photo")


def _key(st: Store, ms) -> list:
    """What the lookup depends on: the vectors' generation and layout, the metadata and tags files."""
    m = ms.manifest()
    key = [LOOKUP_VERSION, _grain(ms), m["generation"], m.get("layout", 0),
           file_key(st.path / "metadata.parquet"), file_key(st.path / "tags.parquet")]
    return json.loads(json.dumps(key))  # as read back from JSON: tuples become lists


def _folder(ms):
    return getattr(ms, "photos", ms).path / "catalog"


def _open_lookup(st: Store, ms) -> CatalogRows | None:
    """The saved lookup when it is current, else built (and saved when the store can be written)."""
    key = _key(st, ms)
    cached = ms._cache.get("catalog_lookup")
    if cached is not None and cached[0] == key:
        lookup, arrays = cached[1], cached[2]
    else:
        lookup, arrays = _read(ms, key) or _build(st, ms, key)
        ms._cache["catalog_lookup"] = (key, lookup, arrays)
    return CatalogRows(st, ms, lookup, arrays) if lookup["usable"] else None


def _read(ms, key: list) -> tuple[dict, dict] | None:
    from vrec.base.files import read_json

    path = _folder(ms) / f"{_grain(ms)}.json"
    try:
        lookup = read_json(path)
        if lookup.get("key") != key:
            return None
        arrays = {name: np.load(_folder(ms) / file, mmap_mode="r", allow_pickle=False)
                  for name, file in lookup["files"].items()}
    except (OSError, ValueError):  # missing, half-removed by a concurrent rebuild, damaged: build again
        return None
    return lookup, arrays


def _build(st: Store, ms, key: list) -> tuple[dict, dict]:
    """The lookup from the whole catalog table (see the module), saved when the store can be written."""
    import pandas as pd

    notes: list[str] = []
    table = catalog_table(st, ms, notes)
    products = _grain(ms) == "product"
    if products:
        groups = ms._groups()
        rows = groups["photos"]["row"].to_numpy()[groups["main"]]
    else:
        rows = table["row"].to_numpy()
    arrays = {"rows": np.ascontiguousarray(rows, np.int64)}
    if products:
        arrays["photos"] = table["photos"].to_numpy(np.int64)
    meta_file = st.path / "metadata.parquet"
    meta_ids = pd.read_parquet(meta_file, columns=["id"])["id"] if meta_file.is_file() else pd.Series([], dtype=object)
    usable = meta_ids.is_unique and (products or bool(np.all(np.diff(arrays["rows"]) > 0)))
    meta = st.metadata()
    renames, dropped = clashes(meta, ms.items(), None) if len(meta.columns) else ({}, [])
    arrays["meta"] = (pd.Index(meta_ids).get_indexer(table["id"]) if usable and len(meta.columns)
                      else np.full(len(table), -1)).astype(np.int64)
    meta_columns = [renames.get(c, c) for c in meta.columns if c not in dropped]
    lookup = {"key": key, "usable": bool(usable), "columns": list(map(str, table.columns)), "notes": notes,
              "renames": renames, "dropped": dropped, "meta_columns": meta_columns,
              "missing_meta": bool(meta_columns) and bool((arrays["meta"] < 0).any())}
    _save(ms, lookup, arrays)
    return lookup, arrays


def _save(ms, lookup: dict, arrays: dict) -> None:
    """The lookup's arrays, then its JSON (which names them), then older files removed; nothing when
    the store cannot be written (a read-only copy): this process keeps it in memory."""
    from vrec.base.files import write_json, write_npy

    folder, grain = _folder(ms), _grain(ms)
    stamp = f"{grain}-{lookup['key'][2]:08d}-{time.time_ns()}"
    lookup["files"] = {name: f"{stamp}-{name}.npy" for name in arrays}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, values in arrays.items():
            write_npy(folder / lookup["files"][name], values)
        write_json(folder / f"{grain}.json", lookup)
        for f in folder.iterdir():
            if f.name.startswith(f"{grain}-") and f.name not in lookup["files"].values():
                f.unlink(missing_ok=True)
    except OSError:
        pass
