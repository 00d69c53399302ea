"""``vrec serve``: a web page and a JSON API over a store, with the models loaded once.

The app is a thin face over the library: every answer comes from ``vrec.search``, ``vrec.compare``
and ``vrec.pages`` -- the functions behind ``vrec search-*``, ``vrec compare`` and ``--html`` --
so the web and the command line never disagree. What this module adds is what a long-lived
process needs:

- **Snapshots.** The store is read into a snapshot (manifests, items, metadata, tags, shard
  memory maps, the HNSW index) that requests share. Before each request the files that a commit
  replaces (``store.json``, ``metadata.parquet``, ``tags.parquet``, every ``manifest.json``) are
  stat-ed; when one changed (``vrec embed`` or ``vrec index`` committed), a new snapshot is read
  and swapped in whole. Commits replace manifests atomically, so a snapshot is never half-written;
  requests already running finish on the old one. The store is only ever read.
- **Models** are loaded once, on first use (the text tower alone for text queries), and shared by
  all requests; encoding runs under one lock (it uses every core anyway).
- **Safety.** Loopback by default; a token (header, query parameter or cookie) guards every route
  but ``/api/health`` and the page's static files; thumbnails are served by catalog id only, from
  inside the catalog folder; uploads have a size limit, and photos that are not images, truncated
  or decompression bombs are refused with a clear 400 -- the server keeps serving.

``create_app(store, ...)`` returns the ASGI app (for tests, or to mount in your own service);
``serve(...)`` runs it on uvicorn. The JSON contract is documented in README.md (``vrec serve``).
"""
import hmac
import io
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

from . import __version__
from .errors import (ModelUnavailable, NotEmbedded, QueryError, StoreError, UnknownItem, VrecError, check_number)
from .store import ModelStore, Store, as_store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_K = 12
MAX_K = 1000  # results per request: a catalog-sized answer would be megabytes of JSON
MAX_UPLOAD_MB = 20.0
MULTIPART_SLACK = 64 * 1024  # form fields and multipart headers around an uploaded photo
THUMB_SIZE = 384  # longest side of /thumb/ pictures, in pixels
THUMB_CACHE = 512  # thumbnails kept in memory (about 30 KB each)
TEXT_CACHE_SIZE = 1024  # query texts whose vectors are kept (3 KB each at 768-d)
MAX_GALLERY = 500  # results in one saved gallery
TITLE_COLUMNS = ("title", "productDisplayName", "name")
# vrec's own columns: not item metadata in API answers (see vrec.search.VREC_COLUMNS)
OWN_COLUMNS = ("rank", "score", "probability", "id", "path", "width", "height", "row", "hash", "size", "mtime",
               "common")
WEB = Path(__file__).resolve().parent / "web"
TOKEN_COOKIE = "vrec_token"

PLACEHOLDER_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>vrec</title></head>
<body style="font-family:system-ui,sans-serif;margin:2em"><h1>vrec serve</h1>
<p>The web page is not installed; the JSON API works: see <a href="/docs">/docs</a> and
<a href="/api/health">/api/health</a>.</p></body></html>"""


# --- snapshots of the store -------------------------------------------------------------------

def store_signature(path: str | os.PathLike) -> tuple:
    """Stat of every file a commit replaces: a change means a new snapshot is due."""
    from .search import file_key as _file_key

    path = Path(path)
    keys = [_file_key(path / name) for name in ("store.json", "metadata.parquet", "tags.parquet")]
    try:
        models = sorted(e.name for e in os.scandir(path / "models") if e.is_dir())
    except OSError:
        models = []
    return tuple(keys) + tuple((m, _file_key(path / "models" / m / "manifest.json")) for m in models)


def index_state(ms: ModelStore, entry: dict | None = None) -> str:
    """How a model is searched: "hnsw" (its index), "exact", or "stale" (an index older than the vectors)."""
    from .index import EXACT_BELOW

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
            from .index import loaded_index

            loaded_index(self)

    def shard_vectors(self, shard):
        return self._maps[shard.name]

    def _deleted_rows(self, shard):
        return self._dead[shard.name]

    def refresh(self) -> None:  # a snapshot never changes; a newer one replaces it
        pass


class Snapshot(Store):
    """The store as it was at one moment, shared read-only by the requests that use it."""

    def __init__(self, path: str | os.PathLike, signature: tuple = ()):
        from .encoders import store_key

        super().__init__(path)
        self.signature = signature
        self._info = super().info()
        self._meta = super().metadata()
        self._tags = super().tags()
        self._models: dict[str, _SnapshotModel] = {}
        for name in super().model_names():
            self._models[name] = _SnapshotModel(self, name, self.path / "models" / store_key(name))
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
        if name in self._models:
            return self._models[name]
        return super().model(name)  # raises NotEmbedded with the usual sentence (or a model committed just now)

    def table(self, model: str, notes: list | None = None):
        from .search import catalog_table

        return catalog_table(self, self.model(model), notes)

    def position(self, model: str, item_id: str) -> int | None:
        """Position of the item with exactly this id in the model's table, or None."""
        lookup = self._lookup.get(model)
        if lookup is None:
            with self._lock:
                lookup = self._lookup.get(model)
                if lookup is None:
                    ids = self.table(model)["id"].astype(str).tolist()
                    lookup = self._lookup[model] = dict(zip(ids, range(len(ids))))
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
                    print(f"vrec serve: kept the previous data; the store changed but cannot be read ({e})",
                          file=sys.stderr, flush=True)
                    return snap
                self._snap, self._failed = new, None
                self.reloads += 1
            return self._snap


# --- models -----------------------------------------------------------------------------------

class Encoders:
    """Encoders loaded once per model and shared by every request; one model runs at a time."""

    def __init__(self, device: str = "auto", weights: dict | None = None):
        self.device = device
        self.weights = dict(weights or {})
        self.lock = threading.Lock()  # encoding: torch already uses every core for one query
        self._load_lock = threading.Lock()
        self._loaded: dict[str, tuple] = {}  # name -> (encoder, has image tower)
        self._texts: OrderedDict = OrderedDict()  # (model, text) -> vector, least recently used first

    def loaded(self, ms: ModelStore, images: bool):
        from .search import load_encoder

        with self._load_lock:
            enc, full = self._loaded.get(ms.name, (None, False))
            if enc is None or (images and not full):
                enc = load_encoder(ms, self.weights.get(ms.name), self.device, text_only=not images)
                self._loaded[ms.name] = (enc, images)
            return enc

    def text_vectors(self, ms: ModelStore, texts: list[str]):
        """The texts' vectors, each encoded once per server (the last TEXT_CACHE_SIZE texts are kept):
        a person refining filters, paging back or changing k asks the same text again, and encoding
        is nearly all of a text query's time."""
        keys = [(ms.name, t) for t in texts]
        with self._load_lock:
            found = {k: self._texts[k] for k in keys if k in self._texts}
            for k in found:
                self._texts.move_to_end(k)
        missing = [t for _, t in dict.fromkeys(k for k in keys if k not in found)]
        if missing:
            enc = self.loaded(ms, images=False)
            with self.lock:
                rows = enc.encode_texts(missing)
            with self._load_lock:
                for t, row in zip(missing, rows):
                    found[(ms.name, t)] = self._texts[(ms.name, t)] = row
                while len(self._texts) > TEXT_CACHE_SIZE:
                    self._texts.popitem(last=False)
        import numpy as np

        return np.stack([found[k] for k in keys])

    def for_model(self, ms: ModelStore) -> "SharedEncoder":
        return SharedEncoder(self, ms)


class SharedEncoder:
    """What vrec.search needs of an encoder, loading the shared one on first use (the text tower
    alone until a photo needs the image tower) and encoding under the shared lock."""

    def __init__(self, pool: Encoders, ms: ModelStore):
        self.pool, self.ms = pool, ms

    @property
    def entry(self):
        from .encoders import resolve

        return resolve(self.ms.name)

    name = property(lambda self: self.ms.name)
    preprocess_spec = property(lambda self: self.entry.preprocess)

    def encode_texts(self, texts: Sequence[str]):
        from .encoders import no_text_tower

        if not self.entry.text:  # say so before loading anything
            raise no_text_tower(self.ms.name)
        return self.pool.text_vectors(self.ms, list(texts))

    def encode_images(self, images):
        enc = self.pool.loaded(self.ms, images=True)
        with self.pool.lock:
            return enc.encode_images(images)

    @property
    def logit_scale(self):
        return self.pool.loaded(self.ms, images=False).logit_scale

    @property
    def logit_bias(self):
        return self.pool.loaded(self.ms, images=False).logit_bias


def has_text_tower(name: str) -> bool:
    from .encoders import resolve

    try:
        return bool(resolve(name).text)
    except VrecError:
        return False


def pick_models(st: Store, model: str | None = None, compare_with: str | None = None) -> tuple[str, str | None]:
    """The search model and the comparison model: the ones named (they must be in the store), else
    siglip (or the first embedded model with a text tower) and cnn (or the first other embedded
    model without one; None when there is none)."""
    have = st.model_names()
    if not have:
        st.info()  # no store at all: that error first
        raise NotEmbedded(f"The store {str(st.path)!r} holds no vectors yet; run 'vrec embed FOLDER' first.")
    if model is None:
        model = "siglip" if "siglip" in have else next((m for m in have if has_text_tower(m)), have[0])
    else:
        st.model(model)  # NotEmbedded, with the models it has
    if compare_with is None:
        others = [m for m in have if m != model]
        compare_with = "cnn" if "cnn" in others else next((m for m in others if not has_text_tower(m)), None)
    else:
        if compare_with == model:
            raise VrecError(f"--compare-with names the search model {model!r}; name another model to compare with.")
        st.model(compare_with)
    return model, compare_with


# --- JSON -------------------------------------------------------------------------------------

def thumb_url(item_id: str) -> str:
    return "/thumb/" + quote(str(item_id), safe="/")


def _title(record: dict) -> str | None:
    for c in TITLE_COLUMNS:
        v = record.get(c)
        if isinstance(v, str) and v:
            return v
    return None


def _metadata(record: dict) -> dict:
    meta = {c: v for c, v in record.items() if c not in OWN_COLUMNS}
    if not meta.get("tags"):
        meta.pop("tags", None)
    return meta


def result_records(table) -> list[dict]:
    """Result dicts of the API from a result table (rank, score, [probability], id, ... metadata)."""
    from .records import json_safe, to_records

    out = []
    for r in to_records(table):
        out.append(json_safe({"rank": int(r["rank"]), "id": str(r["id"]), "score": r["score"],
                              "probability": r.get("probability"), "thumb": thumb_url(r["id"]),
                              "title": _title(r), "metadata": _metadata(r)}))
    return out


def item_record(row) -> dict:
    """An Item of the API from a catalog table row."""
    from .records import json_safe

    r = {k: v for k, v in row.to_dict().items()}
    r = json_safe({k: (None if _isna(v) else v) for k, v in r.items()})
    return {"id": str(r["id"]), "thumb": thumb_url(r["id"]), "width": _int(r.get("width")),
            "height": _int(r.get("height")), "title": _title(r), "metadata": _metadata(r)}


def _isna(v) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(v)) if not isinstance(v, (list, tuple, dict)) else False
    except (TypeError, ValueError):
        return False


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


# --- thumbnails -------------------------------------------------------------------------------

class Thumbnails:
    """Resized JPEGs of catalog photos, by catalog id only, kept in a small LRU cache."""

    def __init__(self, size: int = THUMB_SIZE, capacity: int = THUMB_CACHE):
        self.size, self.capacity = size, capacity
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, snap: Snapshot, models: Sequence[str], item_id: str) -> bytes:
        from .catalog import BadImage, decode_image, read_regular

        for model in models:
            pos = snap.position(model, item_id)
            if pos is not None:
                row = snap.table(model).iloc[pos]
                break
        else:
            raise UnknownItem(f"No item {item_id!r} in the store.")
        key = (item_id, str(row["hash"]), str(row["mtime"]))
        with self._lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
                return data
        path = self.photo_path(snap, str(row["path"]), item_id)
        try:
            img = decode_image(read_regular(path), min_size=self.size)
        except OSError as e:
            raise UnknownItem(f"The photo of {item_id!r} is no longer readable ({e.strerror or e}).") from None
        except BadImage as e:
            raise UnknownItem(f"The photo of {item_id!r} cannot be shown: {e}.") from None
        img.thumbnail((self.size, self.size))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        data = buf.getvalue()
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return data

    @staticmethod
    def photo_path(snap: Snapshot, rel: str, item_id: str) -> Path:
        """The photo's file, only when it lies inside the catalog folder (after following links)."""
        root_text = str(snap.info().get("root", ""))
        if "://" in root_text:
            raise UnknownItem(f"The photo of {item_id!r} is not on this machine (the catalog is {root_text!r}).")
        root = Path(root_text).resolve()
        if not rel or Path(rel).is_absolute():
            raise UnknownItem(f"No photo for {item_id!r} in the catalog.")
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise UnknownItem(f"The photo of {item_id!r} lies outside the catalog folder; it is not served.")
        return path


# --- the app ----------------------------------------------------------------------------------

class TooLarge(Exception):
    """A request body over the upload limit (raised while the body is read)."""


class Service:
    """Everything the routes share: the live store, the models, the thumbnails, the settings."""

    def __init__(self, store, model: str | None, compare_with: str | None, token: str | None,
                 max_upload_mb: float, device: str, weights: dict | None):
        check_number("max_upload_mb", max_upload_mb, min=0.001, max=10_000, hint="in megabytes, e.g. 20")
        st = as_store(store)
        self.live = LiveStore(st.path)
        self.model, self.compare_with = pick_models(self.live.current(), model, compare_with)
        self.token = token or None
        self.max_upload_mb = float(max_upload_mb)
        self.max_upload = int(self.max_upload_mb * 1024 * 1024)
        self.encoders = Encoders(device, weights)
        self.thumbs = Thumbnails()

    # the snapshot every request starts from
    def snap(self) -> Snapshot:
        return self.live.current()

    def check_model(self, snap: Snapshot, model: str | None) -> str:
        model = model or self.model
        snap.model(model)  # NotEmbedded (400) when the store lacks it
        return model

    def notes(self, snap: Snapshot, model: str) -> list[str]:
        ms = snap.model(model)
        if getattr(ms, "index", None) == "stale":
            return [f"the index of {model!r} is older than its vectors, so this search ran exactly (slower on a "
                    f"large catalog); run 'vrec index --model {model}' to bring it up to date"]
        return []

    def resolve(self, snap: Snapshot, model: str, item_id: str) -> int:
        """Position of a catalog item by id (or a unique id ending, as on the command line); 404 otherwise.

        Never a file path: an id that names no item is an error, not a file to open."""
        from .search import resolve_item, unknown_item

        pos = snap.position(model, item_id)
        if pos is None:
            table = snap.table(model)
            pos = resolve_item(table, item_id)
            if pos is None:
                raise unknown_item(table, item_id)
        return pos

    def results(self, result, kind: str, k: int, took: float, snap: Snapshot) -> dict:
        return {"kind": kind, "query": result.query, "model": result.model, "k": int(k),
                "took_ms": round(took * 1000, 2), "notes": self.notes(snap, result.model) + list(result.notes),
                "results": result_records(result.table)}

    def health(self) -> dict:
        snap = self.snap()
        models = []
        for name in snap.model_names():
            ms = snap.model(name)
            models.append({"name": name, "dim": ms.dim, "items": len(ms), "text": has_text_tower(name),
                           "index": getattr(ms, "index", None) or index_state(ms)})
        table = snap.table(self.model)
        filters = [str(c) for c in table.columns if c not in OWN_COLUMNS and c != "tags"]
        return {"version": __version__, "items": len(snap.model(self.model)), "default_model": self.model,
                "compare_with": self.compare_with, "models": models, "filters": filters,
                "token_required": self.token is not None}

    def warm(self) -> None:
        """Load the search model's text tower now, so the first query does not wait for it."""
        snap = self.snap()
        if has_text_tower(self.model):
            self.encoders.for_model(snap.model(self.model)).encode_texts(["a photo."])

    # token
    def authorized(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def _error(status: int, message: str, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _status_of(e: VrecError) -> int:
    if isinstance(e, UnknownItem):
        return 404
    if isinstance(e, NotEmbedded):
        return 400  # a model= the store does not hold
    if isinstance(e, ModelUnavailable):
        return 503
    if isinstance(e, StoreError):
        return 500
    return 400


def _validation_message(exc) -> str:
    """One sentence for FastAPI's request validation errors (never its default JSON shape)."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    if not errors:
        return "The request is malformed; see /docs for the parameters each route takes."
    e = errors[0]
    loc = [str(p) for p in e.get("loc", ())]
    where = {"query": "query parameter", "path": "path parameter", "body": "form field", "header": "header",
             "cookie": "cookie"}.get(loc[0] if loc else "", "parameter")
    name = loc[-1] if len(loc) > 1 else "?"
    kind = e.get("type", "")
    if kind == "missing":
        return f"The {where} {name!r} is missing; see /docs for what this route takes."
    if kind == "json_invalid":
        return "The request body is not valid JSON."
    value = e.get("input")
    msg = str(e.get("msg", "is invalid")).rstrip(".")
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"The {where} {name!r} is invalid ({msg}; got {value!r})."


class Guard:
    """Pure ASGI middleware: the token check, and the upload size limit (413 before the body is read
    when its Content-Length says so, else as soon as the bytes received pass the limit)."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    @staticmethod
    def exempt(scope) -> bool:
        from urllib.parse import parse_qs

        path = scope.get("path", "")
        if path == "/api/health" or path.startswith("/static/"):
            return True
        return path == "/" and "token" in parse_qs(scope.get("query_string", b"").decode("latin-1"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        svc = self.service
        if svc.token is not None and not self.exempt(scope):
            from starlette.requests import HTTPConnection

            conn = HTTPConnection(scope)
            auth = conn.headers.get("authorization", "")
            given = (auth[7:].strip() if auth.lower().startswith("bearer ") else None) \
                or conn.query_params.get("token") or conn.cookies.get(TOKEN_COOKIE)
            if not svc.authorized(given):
                msg = ("This vrec server needs its token: open the URL that 'vrec serve' printed (it ends with "
                       "?token=...), or send the header 'Authorization: Bearer TOKEN'." if not given else
                       "The token is wrong; use the one 'vrec serve' printed when it started.")
                return await _error(401, msg, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            limit = svc.max_upload + MULTIPART_SLACK
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                return await _error(413, self.too_large())(scope, receive, send)
            received = 0

            async def limited():
                nonlocal received
                message = await receive()
                if message.get("type") == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise TooLarge()
                return message

            try:
                return await self.app(scope, limited, send)
            except TooLarge:  # raised before any response was started (while the body was parsed)
                return await _error(413, self.too_large())(scope, receive, send)
        return await self.app(scope, receive, send)

    def too_large(self) -> str:
        return (f"The upload is larger than this server's limit of {self.service.max_upload_mb:g} MB; send a "
                f"smaller photo (or start vrec serve with a larger --max-upload-mb).")


def create_app(store=None, model: str | None = None, compare_with: str | None = None, token: str | None = None,
               max_upload_mb: float = MAX_UPLOAD_MB, device: str = "auto", weights: dict | None = None,
               experiment: str | None = None, arms: str | Sequence[str] | None = None, split: str | None = None,
               exposure_log: str | os.PathLike | None = None):
    """The ASGI app (FastAPI) over a store: the web page, the JSON API and the thumbnails.

    ``model`` is the search model (default: siglip, else the first embedded model with a text
    tower), ``compare_with`` the other side of /api/compare (default: cnn, else the first other
    embedded model without a text tower). With ``token``, every route but /api/health and the
    page's static files needs it. ``weights`` maps model names to local weights files. With
    ``experiment`` (and ``arms``, e.g. 'cnn,siglip'), /api/recommend/ID?unit=U serves the unit's
    arm's similar items and appends an exposure line to ``exposure_log`` (see vrec.ab.Experiment).
    """
    from fastapi import Body, File, Form, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline  # /docs and /redoc with their scripts served from the package
    from starlette.exceptions import HTTPException as StarletteHTTPException

    svc = Service(store, model, compare_with, token, max_upload_mb, device, weights)
    svc.experiment = _experiment(svc, experiment, arms, split, exposure_log)
    app = FastAPIOffline(title="vrec", version=__version__, static_url="/static/docs",
                  description="Search a product catalog by text or photo, find similar items and compare two "
                              "models' neighbours. Errors are JSON: {\"error\": \"one sentence\"}.")
    app.state.vrec = svc

    # -- errors: always {"error": "..."} --
    @app.exception_handler(VrecError)
    async def _vrec_error(request: Request, exc: VrecError):
        return _error(_status_of(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _error(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if isinstance(exc.__cause__, TooLarge) or isinstance(exc.__context__, TooLarge):
            raise TooLarge()  # Guard answers 413
        if exc.status_code == 404:
            msg = f"No such page: {request.url.path}; the API is listed at /docs."
        elif exc.status_code == 405:
            msg = f"{request.method} is not allowed on {request.url.path}; see /docs."
        else:
            msg = str(exc.detail).rstrip(".") + "."
        return _error(exc.status_code, msg)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # the traceback goes to the server's log
        return _error(500, f"Internal error ({type(exc).__name__}); the server's log has the details.")

    # -- the page --
    @app.get("/", include_in_schema=False)
    def index(token: str | None = None):
        if token is not None:
            if not svc.authorized(token):
                return _error(401, "The token is wrong; use the URL that 'vrec serve' printed when it started.")
            response = RedirectResponse("/", status_code=303)
            if svc.token is not None:
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
            return response
        page = WEB / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse(PLACEHOLDER_PAGE)

    app.mount("/static", StaticFiles(directory=WEB / "static", check_dir=False), name="static")

    # -- the API --
    @app.get("/api/health", summary="Models, items, index state and version")
    def health():
        return JSONResponse(svc.health())

    @app.get("/api/search/text", summary="Items that match a text")
    def search_text(q: str = Query(..., description="What to look for, in plain words."),
                    k: int = Query(DEFAULT_K, description=f"Number of results, 1 to {MAX_K}."),
                    model: str | None = Query(None, description="Model with a text tower (default: the server's)."),
                    filters: list[str] = Query([], alias="filter",
                                               description="Metadata filter such as category=bags or price<200; "
                                                           "repeat to combine.")):
        from .search import search_text as run

        check_number("k", k, min=1, max=MAX_K, integer=True)
        snap = svc.snap()
        model = svc.check_model(snap, model)
        t = time.perf_counter()
        result = run(q, k=k, model=model, store=snap, filters=filters,
                     encoder=svc.encoders.for_model(snap.model(model)))
        return JSONResponse(svc.results(result, "text", k, time.perf_counter() - t, snap))

    @app.post("/api/search/image", summary="Items that look like an uploaded photo, optionally steered by text")
    def search_image(file: UploadFile = File(..., description="The photo (JPEG, PNG, WebP, ...)."),
                     plus: list[str] = Form([], description="Text to add to the query; repeatable."),
                     minus: list[str] = Form([], description="Text to subtract from the query; repeatable."),
                     weight: float = Form(1.0, description="Weight of each plus/minus text, 0 to 10."),
                     k: int = Form(DEFAULT_K, description=f"Number of results, 1 to {MAX_K}."),
                     model: str | None = Form(None, description="Model to search (default: the server's)."),
                     filters: list[str] = Form([], alias="filter", description="Metadata filters; repeatable.")):
        from .search import search_image as run

        check_number("k", k, min=1, max=MAX_K, integer=True)
        data = file.file.read(svc.max_upload + 1)
        if len(data) > svc.max_upload:
            raise TooLarge()
        snap = svc.snap()
        model = svc.check_model(snap, model)
        name = _upload_name(file.filename)
        t = time.perf_counter()
        result = run(name, k=k, model=model, store=snap, filters=filters, plus=[p for p in plus if p.strip()],
                     minus=[m for m in minus if m.strip()], weight=weight,
                     encoder=svc.encoders.for_model(snap.model(model)), image=data)
        return JSONResponse(svc.results(result, "image", k, time.perf_counter() - t, snap))

    @app.get("/api/similar/{item_id:path}", summary="Items similar to a catalog item (the item itself excluded)")
    def similar(item_id: str, k: int = Query(DEFAULT_K, description=f"Number of results, 1 to {MAX_K}."),
                model: str | None = Query(None, description="Model whose neighbours to show (default: the server's)."),
                filters: list[str] = Query([], alias="filter", description="Metadata filters; repeatable.")):
        from .search import search_image as run

        check_number("k", k, min=1, max=MAX_K, integer=True)
        snap = svc.snap()
        model = svc.check_model(snap, model)
        pos = svc.resolve(snap, model, item_id)
        full_id = str(snap.table(model)["id"].iloc[pos])
        t = time.perf_counter()
        result = run(full_id, k=k, model=model, store=snap, filters=filters)
        return JSONResponse(svc.results(result, "similar", k, time.perf_counter() - t, snap))

    @app.get("/api/recommend/{item_id:path}", summary="A/B experiment: the unit's arm's similar items (logged)")
    def recommend(item_id: str, unit: str = Query(..., description="The unit of the experiment: a user or session id."),
                  k: int = Query(DEFAULT_K, description=f"Number of results, 1 to {MAX_K}.")):
        if svc.experiment is None:
            raise QueryError("This server runs no experiment; start it with vrec serve --experiment NAME "
                             "--arms cnn,siglip to serve /api/recommend.")
        check_number("k", k, min=1, max=MAX_K, integer=True)
        snap = svc.snap()
        t = time.perf_counter()
        rec = svc.experiment.recommend(item_id, unit, k=k, store=snap)
        result = rec.pop("result")
        return JSONResponse({**rec, **svc.results(result, "recommend", k, time.perf_counter() - t, snap)})

    @app.get("/api/compare/{item_id:path}", summary="Two models' neighbours of an item, side by side")
    def compare(item_id: str, left: str | None = Query(None, description="Left model (default: the CNN)."),
                right: str | None = Query(None, description="Right model (default: the search model)."),
                k: int = Query(DEFAULT_K, description=f"Neighbours per model, 1 to {MAX_K}.")):
        from .compare import compare as run

        check_number("k", k, min=1, max=MAX_K, integer=True)
        snap = svc.snap()
        left = left or svc.compare_with
        right = right or svc.model
        if left is None:
            raise QueryError(f"This server has no model to compare with; pass left=MODEL (the store has "
                             f"{', '.join(snap.model_names())}) or start vrec serve with --compare-with.")
        for m in (left, right):
            snap.model(m)
        pos = svc.resolve(snap, right, item_id)
        full_id = str(snap.table(right)["id"].iloc[pos])
        if snap.position(left, full_id) is None:
            raise UnknownItem(f"{full_id!r} has no {left} vector; embed the catalog with --model {left} to compare it.")
        c = run([full_id], left=left, right=right, k=k, store=snap, summary=False)
        q = c.queries[0]
        sides = {}
        for side, s in (("left", q.left), ("right", q.right)):
            sides[side] = {"model": s.model, "results": _compare_results(snap, s.model, s.table)}
        shared = [str(i) for i, common in zip(q.left.table["id"], q.left.table["common"]) if common] \
            if len(q.left.table) else []
        return JSONResponse({"id": full_id, "item": item_record(snap.table(right).iloc[pos]), **sides,
                             "overlap": float(q.overlap), "shared": shared, "k": int(c.k), "notes": list(c.notes)})

    @app.get("/api/items/{item_id:path}", summary="One catalog item")
    def item(item_id: str):
        snap = svc.snap()
        pos = svc.resolve(snap, svc.model, item_id)
        return JSONResponse(item_record(snap.table(svc.model).iloc[pos]))

    @app.get("/thumb/{item_id:path}", summary="A catalog item's photo, resized (longest side 384 px)",
             response_class=Response)
    def thumb(item_id: str):
        snap = svc.snap()
        models = [svc.model] + [m for m in snap.model_names() if m != svc.model]
        data = svc.thumbs.get(snap, models, item_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    @app.post("/api/gallery", summary="A self-contained HTML page of results (photos inlined)",
              response_class=HTMLResponse)
    def gallery(body: dict = Body(..., examples=[{"title": "Summer bags", "results": [{"id": "bags/tote-01",
                                                                                        "score": 0.31}]}])):
        from . import pages

        snap = svc.snap()
        title, result = _gallery_result(svc, snap, body)
        html = pages.page(title, pages.search_html(result, Path(str(snap.info().get("root", "")))))
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-")[:60] or "gallery"
        return HTMLResponse(html, headers={"Content-Disposition": f'attachment; filename="{slug}.html"'})

    app.add_middleware(Guard, service=svc)
    return app


def _experiment(svc: Service, name: str | None, arms, split, exposure_log):
    """The A/B experiment /api/recommend serves (vrec.ab.Experiment), or None without --experiment."""
    if name is None:
        if arms is not None or exposure_log is not None:
            raise VrecError("--arms and --exposure-log belong to an experiment; add --experiment NAME.")
        return None
    from .ab import Experiment

    return Experiment(name, arms, split, store=svc.live.current(), exposure_log=exposure_log)


def _upload_name(filename: str | None) -> str:
    """The uploaded file's base name, for the result's query label (never used as a path)."""
    name = re.split(r"[\\/]", filename or "")[-1].strip()
    return name[:120] or "uploaded photo"


def _compare_results(snap: Snapshot, model: str, table) -> list[dict]:
    """Result dicts of one side of a comparison, with each neighbour's metadata from the catalog."""
    from .records import json_safe

    cat = snap.table(model)
    out = []
    for _, r in table.iterrows():
        pos = snap.position(model, str(r["id"]))
        rec = item_record(cat.iloc[pos]) if pos is not None else {"title": None, "metadata": {}}
        out.append(json_safe({"rank": int(r["rank"]), "id": str(r["id"]), "score": float(r["score"]),
                              "probability": None, "thumb": thumb_url(r["id"]), "title": rec["title"],
                              "metadata": rec["metadata"]}))
    return out


def _gallery_result(svc: Service, snap: Snapshot, body) -> tuple[str, object]:
    """The title and a SearchResult for vrec.pages.search_html from a posted gallery."""
    import pandas as pd

    from .search import INTERNAL_COLUMNS, SearchResult

    if not isinstance(body, dict):
        raise QueryError('The gallery must be a JSON object like '
                         '{"title": "...", "results": [{"id": ..., "score": ...}]}.')
    title = body.get("title") or "vrec gallery"
    if not isinstance(title, str):
        raise QueryError("The gallery's title must be a text.")
    title = title.strip()[:200] or "vrec gallery"
    results = body.get("results")
    if not isinstance(results, list) or not results:
        raise QueryError("The gallery has no results; send them as \"results\": [{\"id\": ..., \"score\": ...}].")
    if len(results) > MAX_GALLERY:
        raise QueryError(f"A gallery holds at most {MAX_GALLERY} results (got {len(results)}).")
    model = body.get("model") or svc.model
    if not isinstance(model, str):
        raise QueryError("The gallery's model must be a model name.")
    model = svc.check_model(snap, model)
    cat = snap.table(model)
    positions, scores = [], []
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not isinstance(r.get("id"), str):
            raise QueryError(f"Gallery result {i + 1} has no \"id\"; each result needs an id and a score.")
        try:
            check_number(f"the score of gallery result {i + 1}", r.get("score"))
        except VrecError as e:
            raise QueryError(str(e)) from None
        pos = snap.position(model, r["id"])
        if pos is None:
            raise QueryError(f"Gallery result {i + 1} ({r['id']!r}) is not an item in the store.")
        positions.append(pos)
        scores.append(float(r["score"]))
    table = cat.iloc[positions].drop(columns=list(INTERNAL_COLUMNS), errors="ignore").reset_index(drop=True)
    for i, (item_id, rel) in enumerate(zip(table["id"], table["path"])):
        try:  # the same rule as /thumb/: a photo outside the catalog folder is never read (its card stays empty)
            Thumbnails.photo_path(snap, str(rel), str(item_id))
        except UnknownItem:
            table.loc[i, "path"] = ""
    table.insert(0, "score", pd.Series(scores, dtype="float32"))
    table.insert(0, "rank", range(1, len(table) + 1))
    query = body.get("query") if isinstance(body.get("query"), str) and body.get("query").strip() else title
    return title, SearchResult(query.strip()[:200], "gallery", model, table)


# --- running it -------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    import ipaddress
    import socket

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token (anyone on the network could use it)."""
    import secrets

    if not is_loopback(host) and not token:
        raise VrecError(f"--host {host} makes the server reachable from other machines, so it needs a token: "
                        f"add --token {secrets.token_urlsafe(16)} (or any secret of your own) and share the "
                        f"URL it prints only with the people who should use it.")


def bind(host: str, port: int):
    """A listening socket on host:port (port 0: a free one), or one clear error."""
    import socket

    check_number("--port", port, min=0, max=65535, integer=True, hint="e.g. 8765")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
    except OSError as e:
        raise VrecError(f"Cannot listen on {host!r} ({e}); give an address of this machine, e.g. 127.0.0.1.") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        why = "it is in use" if e.errno == 98 else (e.strerror or str(e))
        raise VrecError(f"Cannot listen on {host}:{port} ({why}); pick another --port.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def serve(store=None, model: str | None = None, compare_with: str | None = None, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, token: str | None = None, max_upload_mb: float = MAX_UPLOAD_MB,
          device: str = "auto", warm: bool = True, on_ready=None, experiment: str | None = None,
          arms: str | Sequence[str] | None = None, split: str | None = None,
          exposure_log: str | os.PathLike | None = None) -> None:
    """Run the app on uvicorn until Ctrl-C (or SIGTERM). The first line on stdout is the URL to open.

    Loopback only unless a ``token`` is given. ``warm`` loads the search model's text tower in the
    background right away. ``on_ready(url)`` (default: print it) is called once the port listens.
    """
    import uvicorn

    check_number("--port", port, min=0, max=65535, integer=True, hint="0 picks a free port")
    check_number("--max-upload-mb", max_upload_mb, min=0.001, max=10_000, hint="in megabytes, e.g. 20")
    check_exposure(host, token)
    app = create_app(store, model, compare_with, token, max_upload_mb, device, experiment=experiment, arms=arms,
                     split=split, exposure_log=exposure_log)
    svc: Service = app.state.vrec
    sock = bind(host, port)
    url = url_of(host, sock.getsockname()[1], token)
    (on_ready or (lambda u: print(f"vrec serve: {u}", flush=True)))(url)
    print(f"vrec serve: {svc.model} for search"
          + (f", {svc.compare_with} to compare with" if svc.compare_with else ", no model to compare with")
          + f"; {len(svc.snap().model(svc.model)):,} items; Ctrl-C stops it.", file=sys.stderr, flush=True)
    if svc.experiment is not None:
        e = svc.experiment
        print(f"vrec serve: experiment {e.name!r}, arms " + ", ".join(a if a == m else f"{a}={m}" for a, m in e.models.items())
              + " at /api/recommend/ID?unit=U" + (f"; exposures to {e.exposure_log}" if e.exposure_log else
                                                  " (no --exposure-log: exposures are not recorded)"),
              file=sys.stderr, flush=True)
    if warm:
        def warm_up():
            try:
                svc.warm()
            except Exception as e:  # a model that cannot load: its requests say why
                print(f"vrec serve: could not load {svc.model} yet ({e})", file=sys.stderr, flush=True)
        threading.Thread(target=warm_up, name="vrec-warm-up", daemon=True).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print("vrec serve: stopped.", file=sys.stderr, flush=True)
