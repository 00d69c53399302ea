"""The on-disk store: vectors and items per model, built to grow to millions of items.

Layout (no pickle anywhere; every file is written to a temporary name and renamed)::

    STORE/store.json                    schema version, catalog root
    STORE/metadata.parquet              product metadata joined from --metadata (id + columns)
    STORE/skipped.parquet               files the last run could not use, with the reason
    STORE/models/<model>/manifest.json  model configuration + the list of committed shards
    STORE/models/<model>/shards/NNNNNNNN.npy      float32 vectors [rows, dim], read memory-mapped
    STORE/models/<model>/shards/NNNNNNNN.parquet  one row per vector (a photo): id, path, hash, size, mtime,
                                                  width, height, product, position
    STORE/models/<model>/shards/NNNNNNNN.del-G.npy  rows of that shard removed since (tombstones)
    STORE/models/<model>/index/...      the HNSW index (see vrec.store.index)

Shards are append-only and immutable: a run that adds 1% new items writes 1% of the bytes. A
commit writes its new files first and then replaces manifest.json atomically, so a crash at any
point leaves the previous manifest -- and the previous contents -- valid. Files no manifest
lists are left-overs of an interrupted commit and are removed by the next writer. Removed or
changed items are tombstoned; when tombstones pile up the live rows are compacted into new shards.

Row numbers are global across shards in manifest order; the index uses them as labels.

Photos and products: each row is one photo, with the ``product`` it shows and its ``position``
among that product's photos (1 = the main photo). A folder of single photos has one product per
photo (``product`` = ``id``); shards written before products existed read that way too. Once a
model holds a product with several photos its manifest says ``"products": true`` and
:meth:`Store.model` answers with a :class:`vrec.store.products.ProductStore`: the same interface,
one row per product (see there).
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vrec.base import __version__
from vrec.base.errors import ConfigMismatch, NotEmbedded, StoreError, suggest
from vrec.base.files import folder_name, now, read_json, write_json, write_parquet
from vrec.base.userfiles import describe

SCHEMA_VERSION = 1
DEFAULT_STORE = ".vrec"
ITEM_COLUMNS = ["id", "path", "hash", "size", "mtime", "width", "height", "product", "position"]
COMPACT_DELETED_SHARE = 0.25  # compact once a quarter of the rows are tombstones
COMPACT_MAX_SHARDS = 256  # ... or once there are this many shards
# Rows per parquet row group in item shards and metadata.parquet: a query reads the row groups of
# its k results only (vrec.store.catalog_rows), a few ms each, instead of whole files.
ROW_GROUP_ROWS = 8192


def default_store_path() -> str:
    return os.environ.get("VREC_STORE") or DEFAULT_STORE


def _check_schema(obj: dict, path: Path) -> dict:
    version = obj.get("schema_version", 0)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{str(path)!r} was written by a newer vrec (store schema {version}, this vrec reads up to "
            f"{SCHEMA_VERSION}); upgrade vrec with 'pip install -U vrec'."
        )
    return MIGRATIONS.get(version, lambda o, p: o)(obj, path)


def _migrate_v0(obj: dict, path: Path) -> dict:
    """Schema 0 had no version field; it is otherwise schema 1."""
    return {**obj, "schema_version": SCHEMA_VERSION}


MIGRATIONS = {0: _migrate_v0}


# --- the store --------------------------------------------------------------------------------

class Store:
    """A folder holding one catalog's items, metadata and per-model vectors."""

    # False: a query reads only the catalog rows it needs from the files (vrec.store.catalog_rows);
    # a long-lived process that keeps whole catalog tables in memory (vrec serve) says True.
    keeps_tables = False

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path or default_store_path())

    @property
    def info_path(self) -> Path:
        return self.path / "store.json"

    def exists(self) -> bool:
        return self.info_path.is_file()

    def _check_folder(self) -> None:
        """A --store that is a file, a device or a pipe: one clear error, before anything else."""
        what = None if self.path.is_dir() else describe(self.path) or "is a file"
        if what is not None and what != "does not exist":  # a missing store is created when needed
            raise StoreError(f"--store {str(self.path)!r} {what}, not a folder; pass a folder for the store "
                             f"(it is created if missing), e.g. --store ./.vrec.")

    def info(self) -> dict:
        self._check_folder()
        if not self.exists():
            raise StoreError(
                f"No vrec store at {str(self.path)!r}; run 'vrec embed FOLDER' first "
                f"(or pass --store / set VREC_STORE to where it is)."
            )
        return _check_schema(read_json(self.info_path), self.info_path)

    def create(self, root: str | os.PathLike) -> dict:
        """Create the store for a catalog folder, or check that it belongs to that folder."""
        root_abs = str(root) if "://" in str(root) else str(Path(root).resolve())
        self._check_folder()
        if self.exists():
            info = self.info()
            moved_away = "://" in info.get("root", "") or not Path(info.get("root", "")).exists()
            if info.get("root") and info["root"] != root_abs and not moved_away:
                raise StoreError(
                    f"The store {str(self.path)!r} belongs to the catalog {info['root']!r}; embedding "
                    f"{root_abs!r} into it would replace that catalog. Use --store for a separate store."
                )
            info["root"] = root_abs  # the catalog folder may have moved: follow it
            if info != read_json(self.info_path):  # moved, or migrated from an older schema
                write_json(self.info_path, info)
            return info
        info = {"schema_version": SCHEMA_VERSION, "root": root_abs, "created": now(), "vrec_version": __version__}
        write_json(self.info_path, info)
        return info

    def set_info(self, **values) -> None:
        """Record more about the catalog in store.json (e.g. ``photo_cache``, where downloaded photos are)."""
        info = self.info()
        if any(info.get(k) != v for k, v in values.items()):
            write_json(self.info_path, {**info, **values})

    @property
    def root(self) -> Path:
        return Path(self.info()["root"])

    def model_names(self) -> list[str]:
        d = self.path / "models"
        if not d.is_dir():
            return []
        names = []
        for m in sorted(d.iterdir()):
            if (m / "manifest.json").is_file():
                names.append(read_json(m / "manifest.json")["model"]["name"])
        return names

    def model(self, name: str) -> ModelStore:
        """The vectors of one model; raises NotEmbedded when that model has none here."""
        self.info()
        folder = folder_name(name)
        if len(folder.encode()) > 255:  # no folder can have that name, so no store holds that model
            raise NotEmbedded(f"No model named {name[:40]!r}... ({len(name)} characters) in {str(self.path)!r}; "
                              f"it has {', '.join(self.model_names()) or 'none'}.")
        ms = ModelStore(self, name, self.path / "models" / folder)
        if not ms.exists():
            have = self.model_names()
            hint = suggest(name, have)
            todo = (f"run 'vrec embed FOLDER --model {name}'" if re.fullmatch(r"[\w.:/@+-]+", name)
                    else "check the name: a model name has no spaces or punctuation but - _ . : / @")
            raise NotEmbedded(
                f"Model {name!r} has no vectors in {str(self.path)!r}"
                + (f" (it has {', '.join(have)})" if have else "")
                + f"; {todo}.{hint}"
            )
        ms = ms.checked()
        if ms.manifest().get("products"):
            from vrec.store.products import ProductStore

            return ProductStore(ms)
        return ms

    def photos(self, name: str) -> ModelStore:
        """One model's vectors photo by photo, whatever the catalog's products (``model`` groups them)."""
        ms = self.model(name)
        return getattr(ms, "photos", ms)

    def model_for_writing(self, name: str) -> ModelStore:
        return ModelStore(self, name, self.path / "models" / folder_name(name))

    # metadata and skipped files are small, per catalog, and rewritten whole
    def metadata(self):
        import pandas as pd

        p = self.path / "metadata.parquet"
        return pd.read_parquet(p).set_index("id") if p.is_file() else pd.DataFrame(index=pd.Index([], name="id"))

    def write_metadata(self, df) -> None:
        write_parquet(self.path / "metadata.parquet", df.reset_index(), row_group_size=ROW_GROUP_ROWS)

    def tags(self):
        """Saved zero-shot tags per item id ('tag1, tag2', best first), or None if never tagged."""
        import pandas as pd

        p = self.path / "tags.parquet"
        if not p.is_file():
            return None
        return pd.read_parquet(p).groupby("id", sort=False)["tag"].agg(", ".join)

    def skipped(self):
        import pandas as pd

        p = self.path / "skipped.parquet"
        return pd.read_parquet(p) if p.is_file() else pd.DataFrame(columns=["path", "reason"])

    def write_skipped(self, rows: list[tuple[str, str]]) -> None:
        import pandas as pd

        write_parquet(self.path / "skipped.parquet", pd.DataFrame(rows, columns=["path", "reason"]))


@dataclass
class Shard:
    name: str
    rows: int
    deleted: str | None = None
    deleted_count: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "rows": self.rows, "deleted": self.deleted, "deleted_count": self.deleted_count}


class ModelStore:
    """One model's vectors and items inside a store."""

    def __init__(self, store: Store, name: str, path: Path):
        self.store, self.name, self.path = store, name, path
        self._cache: dict = {}

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def shard_dir(self) -> Path:
        return self.path / "shards"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict:
        m = self._cache.get("manifest")
        if m is None:
            m = _check_schema(read_json(self.manifest_path), self.manifest_path)
            self._cache = {"manifest": m}
        return m

    def checked(self) -> ModelStore:
        """This model store, after checking that every file its manifest lists is there."""
        if not self._cache.get("checked"):
            self._check_files()
            self._cache["checked"] = True
        return self

    def refresh(self) -> None:
        self._cache = {}

    @property
    def config(self) -> dict:
        return self.manifest()["model"]

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    @property
    def generation(self) -> int:
        return int(self.manifest()["generation"])

    def shards(self) -> list[Shard]:
        return [Shard(**s) for s in self.manifest()["shards"]]

    def check_config(self, config: dict) -> None:
        """Refuse to mix vectors of two configurations (or precisions) under one model name.

        A model folder that holds no vectors yet (an earlier run failed before its first batch)
        binds nothing: its configuration is replaced by the next run's.
        """
        if not self.exists() or not self.manifest()["shards"]:
            return
        have = self.config
        defaults = {"precision": "fp32"}  # stores written before precision was recorded hold fp32
        diffs = [k for k in ("architecture", "weights", "dim", "preprocess", "precision")
                 if have.get(k, defaults.get(k)) != config.get(k, defaults.get(k))]
        if diffs:
            k = diffs[0]
            what = "precision" if k == "precision" else f"another {k}"
            raise ConfigMismatch(
                f"The store {str(self.store.path)!r} holds {self.name!r} vectors made with {what} "
                f"({have.get(k, defaults.get(k))!r}, now {config.get(k, defaults.get(k))!r}); vectors of two "
                f"configurations are never mixed. "
                + (f"Run with --precision {have.get(k, 'fp32')}, use another --store, or delete "
                   if k == "precision" else "Use another --store, or delete ")
                + f"{str(self.path)!r} to embed again from scratch."
            )

    def missing_files(self) -> list[str]:
        """Files the manifest lists that are not on disk (deleted by hand, or a damaged copy)."""
        missing = []
        for s in self.manifest()["shards"]:
            for f in (f"{s['name']}.npy", f"{s['name']}.parquet") + ((s["deleted"],) if s.get("deleted") else ()):
                if not (self.shard_dir / f).is_file():
                    missing.append(f)
        return missing

    def _check_files(self) -> None:
        missing = self.missing_files()
        if missing:
            raise StoreError(
                f"The {self.name!r} vectors in {str(self.store.path)!r} are damaged: {len(missing)} file(s) the "
                f"manifest lists are missing (e.g. {missing[0]!r}); run 'vrec embed' on the catalog again with "
                f"--model {self.name} to re-embed the rows they held."
            )

    # -- reading --
    def _deleted_rows(self, shard: Shard) -> np.ndarray:
        if not shard.deleted:
            return np.zeros(0, np.int64)
        return np.load(self.shard_dir / shard.deleted, allow_pickle=False)

    def shard_vectors(self, shard: Shard) -> np.ndarray:
        """A shard's vectors, memory-mapped (no copy in RAM)."""
        return np.load(self.shard_dir / f"{shard.name}.npy", mmap_mode="r", allow_pickle=False)

    def items(self):
        """Live items, one row each: id, path, hash, size, mtime, width, height and global ``row``."""
        import pandas as pd

        if "items" not in self._cache:
            self.manifest()
            frames = self._live_frames(lambda path: with_products(pd.read_parquet(path)))
            items = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ITEM_COLUMNS + ["row"])
            self._cache["items"] = items
        return self._cache["items"]

    def _live_frames(self, read) -> list:
        """Each shard's items as ``read(parquet path)`` gives them, with their global ``row`` and
        without the tombstoned ones."""
        frames, start = [], 0
        for shard in self.shards():
            df = read(self.shard_dir / f"{shard.name}.parquet")
            df["row"] = np.arange(start, start + shard.rows, dtype=np.int64)
            dead = self._deleted_rows(shard)
            if len(dead):
                df = df.drop(index=df.index[dead])
            frames.append(df)
            start += shard.rows
        return frames

    def items_at(self, rows) -> object:
        """Live items by global row, in the order given, as ``items()`` has them: reads only the
        parquet row groups that hold them (a query's k results), not every shard."""
        import pandas as pd

        from vrec.base.files import read_parquet_rows

        rows = np.asarray(rows, np.int64)
        starts = np.r_[0, np.cumsum([s.rows for s in self.shards()])]
        shard_of = np.searchsorted(starts, rows, side="right") - 1
        parts = []
        for i, shard in enumerate(self.shards()):
            sel = np.flatnonzero(shard_of == i)
            if len(sel):
                df = with_products(read_parquet_rows(self.shard_dir / f"{shard.name}.parquet", rows[sel] - starts[i]))
                df["row"] = rows[sel]
                parts.append(df.set_axis(sel))
        if not parts:  # no rows asked for: the columns alone
            shards = self.shards()
            if not shards:
                return self.items().copy()
            df = with_products(read_parquet_rows(self.shard_dir / f"{shards[0].name}.parquet", []))
            df["row"] = np.zeros(0, np.int64)
            return df
        return pd.concat(parts).sort_index().reset_index(drop=True)

    def read_items(self, columns: list[str]):
        """A few columns of ``items()`` (and ``row``), reading only those from every shard."""
        import pandas as pd
        import pyarrow.parquet as pq

        def read(path):
            have = set(pq.read_schema(path).names)
            want = [c for c in columns if c in have]
            if any(c in ("product", "position") and c not in have for c in columns) and "id" not in want:
                want.append("id")  # with_products makes a missing product from the id
            return with_products(pd.read_parquet(path, columns=want))[[c for c in columns if c != "row"]]

        frames = self._live_frames(read)
        if not frames:
            return self.items()[[c for c in columns if c != "row"] + ["row"]]
        return pd.concat(frames, ignore_index=True)

    def __len__(self) -> int:
        return len(self.items())

    def live_count(self) -> int:
        """How many live items there are, from the manifest alone (``len`` reads the items)."""
        return sum(s.rows - s.deleted_count for s in self.shards())

    @property
    def total_rows(self) -> int:
        return sum(s.rows for s in self.shards())

    def iter_live(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(global rows, vectors) shard by shard, tombstones dropped; memory stays at one shard."""
        start = 0
        for shard in self.shards():
            vec = self.shard_vectors(shard)
            rows = np.arange(start, start + shard.rows, dtype=np.int64)
            dead = self._deleted_rows(shard)
            if len(dead):
                keep = np.ones(shard.rows, bool)
                keep[dead] = False
                rows, vec = rows[keep], vec[keep]
            yield rows, vec
            start += shard.rows

    def vectors(self) -> np.ndarray:
        """All live vectors in ``items()`` order. With one clean shard this is a memory map, else a copy."""
        if "vectors" not in self._cache:
            parts = [v for _, v in self.iter_live()]
            if len(parts) == 1:
                out = parts[0]
            elif parts:
                out = np.concatenate(parts)
            else:
                out = np.zeros((0, self.dim), np.float32)
            self._cache["vectors"] = out
        return self._cache["vectors"]

    def vectors_for_rows(self, rows: np.ndarray) -> np.ndarray:
        """Vectors by global row number, reading only those rows."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), np.float32)
        start = 0
        for shard in self.shards():
            sel = (rows >= start) & (rows < start + shard.rows)
            if sel.any():
                out[sel] = self.shard_vectors(shard)[rows[sel] - start]
            start += shard.rows
        return out

    # -- writing: vrec.store.writer.ModelWriter(model_store, config) --


def with_products(df):
    """Item rows with their ``product`` and ``position``: rows written before products existed are
    products of one photo each (the product is the photo's id, at position 1)."""
    if "product" not in df.columns:
        df["product"] = df["id"]
    if "position" not in df.columns:
        df["position"] = 1
    return df


def as_store(store: str | os.PathLike | Store | None) -> Store:
    """A Store from a path (or the default), passing an existing Store through."""
    return store if isinstance(store, Store) else Store(store)

