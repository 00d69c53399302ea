"""The store as a long-lived process sees it: a snapshot shared by requests, replaced after a commit.

A command reads the store once and exits; ``vrec serve`` runs for days while ``vrec embed`` and
``vrec index`` commit new vectors. So the server never reads the store files per request: it
reads a **snapshot** (manifests, items, metadata, tags, shard memory maps, the HNSW index) once,
and every request shares it read-only.

Before each request ``LiveStore.current()`` stats the files that a commit replaces
(``store.json``, ``metadata.parquet``, ``tags.parquet``, every ``manifest.json``); when one
changed, a new snapshot is read and swapped in whole. Commits replace manifests atomically, so a
snapshot is never half-written; requests already running finish on the old one, whose memory
maps stay valid even after a compaction deletes their files. A commit that cannot be read is
reported once on stderr and the previous snapshot keeps serving. A store that is gone (its
``store.json`` deleted or moved away) is ``StoreGone`` until it is back. The store is only ever read.

A model whose catalog holds products of several photos is seen as the library sees it: ``model()``
is a ``vrec.store.products.ProductStore`` over the snapshot's photos (one row per product, its
grouping and product vectors cached with the snapshot), ``photos()`` the photos themselves, and
``position`` / ``photo_position`` find a product or a photo by id.
"""
import logging
import os
import threading
import time
from pathlib import Path

from vrec.base.errors import StoreError, VrecError
from vrec.models.registry import store_key
from vrec.store.store import ModelStore, Store

log = logging.getLogger(__name__)


class StoreGone(StoreError):
    """The store a server was started on is no longer there (HTTP 503 until it is back)."""


GONE = ("The store is missing (it was deleted, moved or emptied after vrec serve started); rebuild it with "
        "'vrec embed' (the server picks it up) or restart vrec serve.")


def store_signature(path: str | os.PathLike) -> tuple:
    """Stat of every file a commit replaces: a change means a new snapshot is due."""
    from vrec.store.catalog_table import file_key as _file_key

    path = Path(path)
    keys = [_file_key(path / name) for name in ("store.json", "metadata.parquet", "tags.parquet")]
    try:
        models = sorted(e.name for e in os.scandir(path / "models") if e.is_dir())
    except OSError:
        models = []
    return tuple(keys) + tuple((m, _file_key(path / "models" / m / "manifest.json")) for m in models)


def index_state(ms: ModelStore, entry: dict | None = None) -> str:
    """How a model is searched: "hnsw" (its index), "exact", or "stale" (an index older than the vectors)."""
    from vrec.store.index import EXACT_BELOW

    m = ms.manifest()
    e = entry if entry is not None else m.get("index")
    if e and e["generation"] != m["generation"]:
        return "stale"
    return "hnsw" if e and len(ms) >= EXACT_BELOW else "exact"


class _SnapshotModel(ModelStore):
    """One model's vectors as committed when the snapshot was read: manifest, items, tombstones,
    shard memory maps and the HNSW index are read once, so files that a later commit replaces or
    deletes never break a request that is still running on this snapshot."""

    def __init__(self, store: Store, name: str, path: Path):
        super().__init__(store, name, path)
        m = self.manifest()
        self.checked()
        self._maps, self._dead = {}, {}
        for shard in self.shards():
            self._maps[shard.name] = super().shard_vectors(shard)
            self._dead[shard.name] = super()._deleted_rows(shard)
        self.items()
        self.index_entry = m.get("index")
        self.index = index_state(self, self.index_entry)
        if self.index == "stale":  # searched exactly until 'vrec index' runs again (a note says so)
            self._cache["manifest"] = {**m, "index": None}
        if self.index == "hnsw":
            from vrec.store.index import loaded_index

            loaded_index(self)

    def shard_vectors(self, shard):
        return self._maps[shard.name]

    def _deleted_rows(self, shard):
        return self._dead[shard.name]

    def refresh(self) -> None:  # a snapshot never changes; a newer one replaces it
        pass


class Snapshot(Store):
    """The store as it was at one moment, shared read-only by the requests that use it."""

    keeps_tables = True  # queries use the catalog tables kept here, never the files

    def __init__(self, path: str | os.PathLike, signature: tuple = ()):
        super().__init__(path)
        self.signature = signature
        self._info = super().info()
        self._meta = super().metadata()
        self._tags = super().tags()
        self._models: dict[str, _SnapshotModel] = {}
        for name in super().model_names():
            self._models[name] = _SnapshotModel(self, name, self.path / "models" / store_key(name))
        self._products = {}  # the models whose catalog holds products of several photos
        for name, ms in self._models.items():
            if ms.manifest().get("products"):
                from vrec.store.products import ProductStore

                self._products[name] = ProductStore(ms)
        self._lookup: dict = {}
        self._lock = threading.Lock()

    def info(self) -> dict:
        return self._info

    def metadata(self):
        return self._meta

    def tags(self):
        return self._tags

    def model_names(self) -> list[str]:
        return list(self._models)

    def model(self, name: str) -> ModelStore:
        """The model's vectors as a question sees them: one row per product when its catalog holds
        products of several photos (a ``ProductStore`` over the snapshot's photos), else per photo."""
        if name in self._products:
            return self._products[name]
        if name in self._models:
            return self._models[name]
        return super().model(name)  # raises NotEmbedded with the usual sentence (or a model committed just now)

    def photos(self, name: str) -> ModelStore:
        """The model's vectors photo by photo, whatever the catalog's products."""
        if name in self._models:
            return self._models[name]
        return super().photos(name)

    def table(self, model: str, notes: list | None = None):
        from vrec.store.catalog_table import catalog_table

        return catalog_table(self, self.model(model), notes)

    def has_products(self, model: str) -> bool:
        """Whether the model's catalog holds products of several photos (its table has a row per product)."""
        return model in self._products

    def position(self, model: str, item_id: str) -> int | None:
        """Position of the item (a product, in a catalog of products) with exactly this id in the
        model's table, or None."""
        return self._find(model, item_id, "item")

    def photo_position(self, model: str, photo_id: str) -> int | None:
        """Position of the photo with exactly this id (``PRODUCT/2``) in ``photos(model).items()``, or None
        (always None when the model's catalog holds no products of several photos)."""
        if not self.has_products(model):
            return None
        return self._find(model, photo_id, "photo")

    def _find(self, model: str, item_id: str, grain: str) -> int | None:
        key = (model, grain)
        lookup = self._lookup.get(key)
        if lookup is None:
            with self._lock:
                lookup = self._lookup.get(key)
                if lookup is None:
                    table = self.table(model) if grain == "item" else self.photos(model).items()
                    ids = table["id"].astype(str).tolist()
                    lookup = self._lookup[key] = dict(zip(ids, range(len(ids))))
        return lookup.get(item_id)


class LiveStore:
    """The current snapshot of a store, replaced when a commit changes the files it was read from."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._failed: tuple | None = None
        self.reloads = 0
        self._snap = self._read(store_signature(self.path))

    def _read(self, sig: tuple) -> Snapshot:
        for attempt in range(3):  # a compaction may delete files between our stat and our read: read again
            try:
                return Snapshot(self.path, sig)
            except (OSError, StoreError):
                if attempt == 2:
                    raise
                time.sleep(0.2)
                sig = store_signature(self.path)
        raise AssertionError("unreachable")

    def current(self) -> Snapshot:
        sig = store_signature(self.path)
        if sig[0] is None:  # no store.json: the store was deleted or moved away
            raise StoreGone(GONE)
        snap = self._snap
        if sig == snap.signature or sig == self._failed:
            return snap
        with self._lock:  # one request reads the new snapshot; the others wait for it
            snap = self._snap
            sig = store_signature(self.path)
            if sig != snap.signature and sig != self._failed:
                try:
                    new = self._read(sig)
                except (OSError, VrecError) as e:  # a damaged commit: keep serving what was there
                    self._failed = sig
                    log.warning(f"vrec serve: kept the previous data; the store changed but cannot be read ({e})")
                    return snap
                self._snap, self._failed = new, None
                self.reloads += 1
            return self._snap
