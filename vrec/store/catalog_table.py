"""The catalog table of a model: its live items joined with the product metadata and saved tags.

Every question asked of a store (search, compare, export, eval, the web app) starts from this
table; it is cached with the model store's manifest, so a long-lived process joins it once."""
from __future__ import annotations

import os
from pathlib import Path

from vrec.store.store import ModelStore, Store

# vrec's own columns in search results and exports; "v<N>" (vector components in CSV exports) too.
# A metadata column with one of these names is kept, renamed "meta_<name>" (see catalog_table).
VREC_COLUMNS = ("rank", "score", "probability", "id", "path", "width", "height", "tags", "vector",
                "cluster", "cluster_name", "x", "y",  # the style map's (vrec map --csv)
                "row", "hash", "size", "mtime",
                "product", "position", "photo", "photos",  # a product's photos (see vrec.store.products)
                "found_by")  # keyword and hybrid search: which leg found a result (vrec.search.hybrid)


def is_vrec_column(name) -> bool:
    name = str(name)
    return name in VREC_COLUMNS or (len(name) > 1 and name[0] == "v" and name[1:].isdigit())


def _rename_clashes(meta, items, notes: list | None):
    """Metadata with columns named like vrec's own renamed ``meta_<name>`` (one note says so)."""
    renames, dropped = clashes(meta, items, notes)
    return meta.drop(columns=dropped).rename(columns=renames)


def clashes(meta, items, notes: list | None) -> tuple[dict, list]:
    """How metadata columns named like vrec's own are shown: ``{name: "meta_<name>"}``, and the ones
    left out (one note says so).

    A clashing column that only repeats vrec's own values for every item (e.g. a ``path`` file
    column that matched the photos) is left out instead: nothing is lost.
    """
    renames, dropped = {}, []
    taken = set(map(str, meta.columns)) | set(VREC_COLUMNS)
    for c in meta.columns:
        if not is_vrec_column(c):
            continue
        if c in items.columns:
            theirs = items["id"].map(meta[c])
            if (theirs.isna() | (theirs.astype(str) == items[c].astype(str))).all():
                dropped.append(c)
                continue
        new = f"meta_{c}"
        while new in taken:
            new += "_"
        taken.add(new)
        renames[c] = new
    if renames and notes is not None:
        olds, news = ", ".join(map(repr, renames)), ", ".join(map(repr, renames.values()))
        if len(renames) == 1:
            notes.append(f"metadata column {olds} is named {news} here: {olds} is one of vrec's own columns.")
        else:
            notes.append(f"metadata columns {olds} are named {news} here: those are vrec's own column names.")
    return renames, dropped


def catalog_table(st: Store, ms: ModelStore, notes: list | None = None):
    """A model's live items joined with the product metadata and saved tags, in store order.

    vrec's own columns (``VREC_COLUMNS``) keep their names; a metadata column named like one of
    them is renamed ``meta_<name>`` everywhere (results, filters, exports), and a note saying so
    is appended to ``notes``.

    The table is kept with the model store's cached manifest for as long as the metadata and tags
    files stay the same, so a long-lived model store (the web app's) joins it once; callers get a
    shallow copy.
    """
    key = ("catalog_table", getattr(ms, "grain", "photo"), file_key(st.path / "metadata.parquet"),
           file_key(st.path / "tags.parquet"))
    ms.manifest()  # the cache below lives (and is dropped) with the manifest's
    hit = ms._cache.get(key)
    if hit is None:
        for old in [k for k in ms._cache if isinstance(k, tuple) and k[:2] == key[:2]]:
            del ms._cache[old]
        table_notes: list[str] = []
        hit = ms._cache[key] = (_catalog_table(st, ms, table_notes), table_notes)
    if notes is not None:
        notes.extend(hit[1])
    return hit[0].copy(deep=False)


def file_key(path: Path):
    """What changes when a file is replaced (vrec writes by atomic rename: a new inode), or None."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return (s.st_ino, s.st_mtime_ns, s.st_size)


def _catalog_table(st: Store, ms: ModelStore, notes: list):
    items = ms.items()
    meta = st.metadata()
    if len(meta.columns):
        meta = _rename_clashes(meta, items, notes)
        items = items.join(meta, on="id")
    tags = st.tags()
    if tags is not None:
        items = items.join(tags.rename("tags"), on="id")
        items["tags"] = items["tags"].fillna("")
    return items.reset_index(drop=True)
