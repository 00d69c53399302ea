"""Writing one model's vectors: shards and tombstones appended under an exclusive lock, committed by
replacing the manifest atomically (see :mod: for the layout)."""
from __future__ import annotations

import fcntl

import numpy as np

from vrec.base import __version__
from vrec.base.errors import StoreError
from vrec.base.files import now, write_json, write_npy, write_parquet
from vrec.store.store import (
    COMPACT_DELETED_SHARE,
    COMPACT_MAX_SHARDS,
    ITEM_COLUMNS,
    ROW_GROUP_ROWS,
    SCHEMA_VERSION,
    ModelStore,
    Shard,
    with_products,
)


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
        self._products = False  # whether a row added belongs to a product of several photos

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
        items = with_products(items.reset_index(drop=True))[ITEM_COLUMNS]
        self._products = self._products or bool((items["product"].astype(str) != items["id"].astype(str)).any())
        self._pending.append((items, np.ascontiguousarray(vectors, np.float32)))

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
            write_parquet(self.ms.shard_dir / f"{name}.parquet", items, row_group_size=ROW_GROUP_ROWS)
            shards.append(Shard(name, len(items)))
            self.rows_written += len(items)
        products = bool(m.get("products")) or self._products  # once a model holds products, it stays so
        self._commit_manifest({**m, "model": self.config, "vrec_version": __version__, "updated": now(),
                               "generation": gen, "shards": [s.to_dict() for s in shards], "products": products})
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
            write_parquet(self.ms.shard_dir / f"{name}.parquet", items.iloc[offset:offset + len(block)],
                          row_group_size=ROW_GROUP_ROWS)
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
