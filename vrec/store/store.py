"""The on-disk store: vectors and items per model, built to grow to millions of items.

Layout (no pickle anywhere; every file is written to a temporary name and renamed)::

    STORE/store.json                    schema version, catalog root
    STORE/metadata.parquet              product metadata joined from --metadata (id + columns)
    STORE/skipped.parquet               files the last run could not use, with the reason
    STORE/models/<model>/manifest.json  model configuration + the list of committed shards
    STORE/models/<model>/shards/NNNNNNNN.npy      float32 vectors [rows, dim], read memory-mapped
    STORE/models/<model>/shards/NNNNNNNN.parquet  one row per vector: id, path, hash, size, mtime, width, height
    STORE/models/<model>/shards/NNNNNNNN.del-G.npy  rows of that shard removed since (tombstones)
    STORE/models/<model>/index/...      the HNSW index (see vrec.store.index)

Shards are append-only and immutable: a run that adds 1% new items writes 1% of the bytes. A
commit writes its new files first and then replaces manifest.json atomically, so a crash at any
point leaves the previous manifest -- and the previous contents -- valid. Files no manifest
lists are left-overs of an interrupted commit and are removed by the next writer. Removed or
changed items are tombstoned; when tombstones pile up the live rows are compacted into new shards.

Row numbers are global across shards in manifest order; the index uses them as labels.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vrec.base import __version__
from vrec.base.errors import ConfigMismatch, NotEmbedded, StoreError, suggest
from vrec.base.files import folder_name, now, read_json, write_json, write_npy, write_parquet
from vrec.base.userfiles import describe

SCHEMA_VERSION = 1
DEFAULT_STORE = ".vrec"
ITEM_COLUMNS = ["id", "path", "hash", "size", "mtime", "width", "height"]
COMPACT_DELETED_SHARE = 0.25  # compact once a quarter of the rows are tombstones
COMPACT_MAX_SHARDS = 256  # ... or once there are this many shards


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
            raise NotEmbedded(
                f"Model {name!r} has no vectors in {str(self.path)!r}"
                + (f" (it has {', '.join(have)})" if have else "")
                + f"; run 'vrec embed FOLDER --model {name}'.{hint}"
            )
        return ms.checked()

    def model_for_writing(self, name: str) -> ModelStore:
        return ModelStore(self, name, self.path / "models" / folder_name(name))

    # metadata and skipped files are small, per catalog, and rewritten whole
    def metadata(self):
        import pandas as pd

        p = self.path / "metadata.parquet"
        return pd.read_parquet(p).set_index("id") if p.is_file() else pd.DataFrame(index=pd.Index([], name="id"))

    def write_metadata(self, df) -> None:
        write_parquet(self.path / "metadata.parquet", df.reset_index())

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
            frames, start = [], 0
            for shard in self.shards():
                df = pd.read_parquet(self.shard_dir / f"{shard.name}.parquet")
                df["row"] = np.arange(start, start + shard.rows, dtype=np.int64)
                dead = self._deleted_rows(shard)
                if len(dead):
                    df = df.drop(index=df.index[dead])
                frames.append(df)
                start += shard.rows
            items = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ITEM_COLUMNS + ["row"])
            self._cache["items"] = items
        return self._cache["items"]

    def __len__(self) -> int:
        return len(self.items())

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

    # -- writing --
    def writer(self, config: dict) -> ModelWriter:
        return ModelWriter(self, config)


class ModelWriter:
    """Appends shards and tombstones to one model's store, committing atomically.

    Use as a context manager: it holds an exclusive lock on the model folder so that two runs
    never write the same model at once, and removes left-overs of earlier interrupted commits.
    """

    def __init__(self, ms: ModelStore, config: dict):
        self.ms = ms
        self.config = config
        self._lock = None
        self._pending: list[tuple] = []  # (items DataFrame, vectors)
        self._deletes: list[int] = []  # global rows to tombstone
        self.rows_written = 0
        self.repaired = 0

    def __enter__(self) -> ModelWriter:
        self.ms.check_config(self.config)
        try:
            self.ms.shard_dir.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.ms.path / ".lock", "w")
        except OSError as e:
            raise StoreError(f"Cannot write to the store {str(self.ms.store.path)!r} ({e.strerror or e}); "
                             f"check its permissions or pass another --store.") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreError(f"Another vrec process is writing {str(self.ms.path)!r}; wait for it to finish.") from None
        self.repaired = self._drop_missing_shards()
        self._remove_orphans()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.flush()  # every finished batch is kept, also on Ctrl-C, kill, or an error elsewhere
        except Exception:
            if exc[0] is None:
                raise  # a failed commit is the error to report; otherwise the original one is
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def _manifest(self) -> dict:
        """The committed manifest, or a new one: a model's configuration is first committed
        together with its first vectors, so a run that fails before that leaves no trace."""
        if self.ms.exists():
            self.ms.refresh()
            return self.ms.manifest()
        return {"schema_version": SCHEMA_VERSION, "model": self.config, "vrec_version": __version__,
                "created": now(), "updated": now(), "generation": 0, "layout": 0, "shards": [], "index": None}

    def _drop_missing_shards(self) -> int:
        """Repair a store whose shard files were deleted by hand: drop those shards from the
        manifest (their rows are then new again, and get embedded), and renumber rows (a new
        layout, so indexes rebuild). Returns how many rows were dropped."""
        if not self.ms.exists():
            return 0
        m = self._manifest()
        missing = set(self.ms.missing_files())
        if not missing:
            return 0
        keep, dropped = [], 0
        for s in m["shards"]:
            # any lost file loses the shard: without its tombstones, removed rows would come back
            if {f"{s['name']}.npy", f"{s['name']}.parquet", s.get("deleted")} & missing:
                dropped += s["rows"] - s.get("deleted_count", 0)
            else:
                keep.append(s)
        self._commit_manifest({**m, "updated": now(), "generation": m["generation"] + 1,
                               "layout": m.get("layout", 0) + 1, "shards": keep})
        return dropped

    def add(self, items, vectors: np.ndarray) -> None:
        """Queue rows (a DataFrame with ITEM_COLUMNS, and their vectors) for the next commit."""
        if len(items) != len(vectors):
            raise ValueError("items and vectors differ in length")
        if vectors.shape[1] != self.config["dim"]:
            raise ValueError(f"vectors have dim {vectors.shape[1]}, model has {self.config['dim']}")
        self._pending.append((items.reset_index(drop=True)[ITEM_COLUMNS], np.ascontiguousarray(vectors, np.float32)))

    def delete_rows(self, rows) -> None:
        self._deletes.extend(int(r) for r in rows)

    @property
    def pending_rows(self) -> int:
        return sum(len(i) for i, _ in self._pending)

    def flush(self) -> None:
        """Write queued rows as one new shard and tombstones, then commit the manifest."""
        import pandas as pd

        if not self._pending and not self._deletes:
            return
        m = self._manifest()
        gen = m["generation"] + 1
        shards = [Shard(**s) for s in m["shards"]]
        if self._deletes:
            starts = np.cumsum([0] + [s.rows for s in shards])
            dels = np.unique(np.asarray(self._deletes, np.int64))
            for i, shard in enumerate(shards):
                mine = dels[(dels >= starts[i]) & (dels < starts[i + 1])] - starts[i]
                if len(mine):
                    merged = np.union1d(self.ms._deleted_rows(shard), mine)
                    name = f"{shard.name}.del-{gen:08d}.npy"
                    write_npy(self.ms.shard_dir / name, merged)
                    shards[i] = Shard(shard.name, shard.rows, name, len(merged))
        if self._pending:
            items = pd.concat([i for i, _ in self._pending], ignore_index=True)
            vectors = np.concatenate([v for _, v in self._pending])
            name = f"{gen:08d}"
            write_npy(self.ms.shard_dir / f"{name}.npy", vectors)
            write_parquet(self.ms.shard_dir / f"{name}.parquet", items)
            shards.append(Shard(name, len(items)))
            self.rows_written += len(items)
        self._commit_manifest({**m, "model": self.config, "vrec_version": __version__, "updated": now(),
                               "generation": gen, "shards": [s.to_dict() for s in shards]})
        self._pending, self._deletes = [], []
        self._remove_orphans()
        if self._should_compact(shards):
            self.compact()

    def _should_compact(self, shards: list[Shard]) -> bool:
        total = sum(s.rows for s in shards)
        dead = sum(s.deleted_count for s in shards)
        return (total and dead / total >= COMPACT_DELETED_SHARE) or len(shards) > COMPACT_MAX_SHARDS

    def compact(self, shard_rows: int = 1_000_000) -> None:
        """Rewrite live rows into fresh shards (drops tombstones; renumbers rows, so indexes rebuild)."""
        self.ms.refresh()
        m = self.ms.manifest()
        items = self.ms.items()[ITEM_COLUMNS].reset_index(drop=True)
        gen = m["generation"] + 1
        new_shards: list[Shard] = []

        def emit(block: np.ndarray) -> None:
            offset = sum(s.rows for s in new_shards)
            name = f"{gen:08d}-{len(new_shards):03d}"
            write_npy(self.ms.shard_dir / f"{name}.npy", block)
            write_parquet(self.ms.shard_dir / f"{name}.parquet", items.iloc[offset:offset + len(block)])
            new_shards.append(Shard(name, len(block)))

        buf: list[np.ndarray] = []
        for _, v in self.ms.iter_live():
            buf.append(np.asarray(v))
            while sum(len(b) for b in buf) >= shard_rows:
                block = np.concatenate(buf)
                emit(block[:shard_rows])
                buf = [block[shard_rows:]]
        if sum(len(b) for b in buf):
            emit(np.concatenate(buf))
        self._commit_manifest({**m, "updated": now(), "generation": gen, "layout": m.get("layout", 0) + 1,
                               "shards": [s.to_dict() for s in new_shards]})
        self._remove_orphans()

    def _commit_manifest(self, manifest: dict) -> None:
        write_json(self.ms.manifest_path, manifest)
        self.ms.refresh()

    def _remove_orphans(self) -> None:
        """Delete shard files no manifest lists: left-overs of an interrupted or superseded commit."""
        m = self._manifest()
        keep = set()
        for s in m["shards"]:
            keep |= {f"{s['name']}.npy", f"{s['name']}.parquet"}
            if s.get("deleted"):
                keep.add(s["deleted"])
        for f in self.ms.shard_dir.iterdir():
            if f.name not in keep:
                f.unlink(missing_ok=True)


def as_store(store: str | os.PathLike | Store | None) -> Store:
    """A Store from a path (or the default), passing an existing Store through."""
    return store if isinstance(store, Store) else Store(store)

