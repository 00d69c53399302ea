"""What ``vrec serve`` answers, without the HTTP: the state the routes share and the answers' shapes.

``Service`` holds everything a request needs -- the live store (``vrec.serve.live``), the shared
encoders (``vrec.serve.encoder_pool``), the photo decodes (``vrec.serve.decodes``), the thumbnails
(``vrec.serve.thumbnails``), the token and the upload limits -- and the small decisions the routes
have in common: which model a request uses (only one the store holds: a request never makes the
server load or download another), how an item id is found, what ``/api/health`` says, and what
an error may tell a client (never a folder of the server: ``public``). The JSON records below are the API's shapes of a
result and of an item (the contract in README.md, ``vrec serve``); ``gallery_result`` turns a
posted gallery into the ``SearchResult`` that ``vrec.report.pages`` renders, as ``--html`` does.
In a catalog of products of several photos, results are products: each record carries ``photo``
(the product's photo that matched best, the one its ``thumb`` shows) and ``photos`` (how many it
has); the server's ``product_score`` says how a product scores unless a request does.

Nothing here imports the web framework: ``vrec.serve.app`` maps these answers and errors to HTTP.
"""
import hmac
import os
import sqlite3
from urllib.parse import quote

from vrec.base import __version__
from vrec.base.errors import QueryError, UnknownItem, VrecError, check_number, suggest
from vrec.serve.decodes import MAX_UPLOAD_PIXELS, Decodes
from vrec.serve.encoder_pool import Encoders, has_text_tower, pick_models
from vrec.serve.live import GONE, LiveStore, Snapshot, StoreGone, index_state
from vrec.serve.thumbnails import Thumbnails
from vrec.serve.uploads import Uploads
from vrec.store.filters import filterable_columns
from vrec.store.keywords import has_keywords, keyword_stats
from vrec.store.store import as_store

MAX_GALLERY = 500  # results in one saved gallery
TITLE_COLUMNS = ("title", "productDisplayName", "name")
# vrec's own columns: not item metadata in API answers (see vrec.store.catalog_table.VREC_COLUMNS)
OWN_COLUMNS = ("rank", "score", "probability", "id", "path", "width", "height", "row", "hash", "size", "mtime",
               "common", "product", "position", "photo", "photos", "found_by")


# --- JSON records -----------------------------------------------------------------------------

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
    from vrec.base.records import json_safe, to_records

    out = []
    for r in to_records(table):
        photo = r.get("photo")
        photo = str(photo) if photo is not None and not _isna(photo) else None
        out.append(json_safe({"rank": int(r["rank"]), "id": str(r["id"]), "score": r["score"],
                              "probability": r.get("probability"), "thumb": thumb_url(photo or r["id"]),
                              "title": _title(r), "metadata": _metadata(r), "photo": photo,
                              "photos": _int(r.get("photos")), "found_by": r.get("found_by")}))
    return out


def item_record(row) -> dict:
    """An Item of the API from a catalog table row."""
    from vrec.base.records import json_safe

    r = {k: v for k, v in row.to_dict().items()}
    r = json_safe({k: (None if _isna(v) else v) for k, v in r.items()})
    return {"id": str(r["id"]), "thumb": thumb_url(r["id"]), "width": _int(r.get("width")),
            "height": _int(r.get("height")), "title": _title(r), "metadata": _metadata(r),
            "photos": _int(r.get("photos"))}


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


# --- the service ----------------------------------------------------------------------------

class Service:
    """Everything the routes share: the live store, the models, the thumbnails, the settings."""

    def __init__(self, store, model: str | None, compare_with: str | None, token: str | None,
                 max_upload_mb: float, device: str, weights: dict | None,
                 max_upload_pixels: int = MAX_UPLOAD_PIXELS, product_score: str | None = None):
        from vrec.ingest.catalog import MAX_PIXELS
        from vrec.store.products import DEFAULT_SCORING, check_scoring

        check_number("max_upload_mb", max_upload_mb, min=0.001, max=10_000, hint="in megabytes, e.g. 20")
        check_number("--max-upload-pixels", max_upload_pixels, min=1, max=MAX_PIXELS, integer=True,
                     hint=f"in pixels, e.g. {MAX_UPLOAD_PIXELS} (40 megapixels)")
        st = as_store(store)
        self.live = LiveStore(st.path)
        self.model, self.compare_with = pick_models(self.live.current(), model, compare_with)
        self.token = token or None
        self.product_score = check_scoring(product_score or DEFAULT_SCORING)  # how a product of several photos scores
        self.max_upload_mb = float(max_upload_mb)
        self.max_upload = int(self.max_upload_mb * 1024 * 1024)
        self.encoders = Encoders(device, weights)
        self.decodes = Decodes(int(max_upload_pixels))
        self.uploads = Uploads()  # recent uploaded photos by id: photo searches with an address
        self.thumbs = Thumbnails(decodes=self.decodes)
        self.experiment = None  # the A/B test of /api/recommend (open_experiment), if any
        self._private = private_folders(self.live.path, self.live.current().info().get("root"))

    # the snapshot every request starts from
    def snap(self) -> Snapshot:
        snap = self.live.current()  # StoreGone when the store was deleted
        if self.model not in snap.model_names():  # its folder emptied, or rebuilt without the server's model
            raise StoreGone(GONE)
        return snap

    def check_model(self, snap: Snapshot, model: str | None) -> str:
        """The model a request names, when the store holds it (QueryError otherwise). Only the store's
        own models: a name is never resolved, loaded or looked up on the Hugging Face hub for a client."""
        model = model or self.model
        have = snap.model_names()
        if model in have:
            return model
        from vrec.models.registry import MODELS

        shown = model if len(model) <= 80 else model[:77] + "..."
        if model in MODELS:
            raise QueryError(f"Model {shown!r} has no vectors in this server's store; use one it has: "
                             f"{', '.join(have)}.")
        raise QueryError(f"Unknown model {shown!r}: this server answers only with the models its store holds "
                         f"({', '.join(have)}).{suggest(model, have)}")

    def public(self, message: str) -> str:
        """An error message as a client may see it: no folder of this machine (the store, the catalog,
        the home and cache folders). A safety net: the API's own sentences name none."""
        return self._private.sub("<server folder>", message) if self._private else message

    def notes(self, snap: Snapshot, model: str) -> list[str]:
        ms = snap.model(model)
        if getattr(ms, "index", None) == "stale":
            return [f"the index of {model!r} is older than its vectors, so this search ran exactly (slower on a "
                    f"large catalog); run 'vrec index --model {model}' to bring it up to date"]
        return []

    def resolve(self, snap: Snapshot, model: str, item_id: str) -> int:
        """Position of a catalog item by id (or a unique id ending, as on the command line); 404 otherwise.
        In a catalog of products the item is a product, also when named by one of its photos' ids
        (``PRODUCT/3``, a result's ``photo``).

        Never a file path: an id that names no item is an error, not a file to open."""
        from vrec.search.query import resolve_item, unknown_item

        pos = snap.position(model, item_id)
        if pos is None and snap.has_products(model):
            photo = snap.photo_position(model, item_id)
            if photo is not None:
                pos = snap.position(model, str(snap.photos(model).items()["product"].iloc[photo]))
        if pos is None:
            table = snap.table(model)
            pos = resolve_item(table, item_id)
            if pos is None:
                raise unknown_item(table, item_id, photos=False)
        return pos

    def scoring(self, given: str | None) -> str:
        """How products of several photos are scored in a request: as it asks, else as the server was started."""
        return given or self.product_score

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
                           "index": getattr(ms, "index", None) or index_state(ms),
                           "photo_ready": self.encoders.photo_ready(name)})
        table = snap.table(self.model)
        filters = [c for c in filterable_columns(table) if c != "tags"]  # tags: filter with tag:NAME
        photos = len(snap.photos(self.model)) if snap.has_products(self.model) else None
        return {"version": __version__, "items": len(snap.model(self.model)), "default_model": self.model,
                "compare_with": self.compare_with, "models": models, "filters": filters,
                "token_required": self.token is not None, "photos": photos,
                "product_score": self.product_score if photos is not None else None, **keyword_state(snap)}

    def photo_ids(self, snap: Snapshot, pos: int) -> list[str]:
        """A product's photo ids, main photo first (empty in a catalog of single photos)."""
        ms = snap.model(self.model)
        if getattr(ms, "grain", "photo") != "product":
            return []
        import numpy as np

        photos = ms.photos.items()  # in store order: rows ascend
        at = np.searchsorted(photos["row"].to_numpy(), ms.photo_rows([pos])[0])
        return photos["id"].astype(str).to_numpy()[at].tolist()

    def warm(self) -> None:
        """Load the search model's text tower now, so the first query does not wait for it; then its
        image tower, so the first photo search does not either (text queries meanwhile go on with
        the text tower already loaded)."""
        snap = self.snap()
        ms = snap.model(self.model)
        if has_text_tower(self.model):
            self.encoders.for_model(ms).encode_texts(["a photo."])
        from PIL import Image

        self.encoders.for_model(ms).encode_images([Image.new("RGB", (32, 32), "white")])  # loads the image tower

    # token
    def authorized(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def private_folders(store, root):
    """A pattern of the server's folders (and a remote catalog's address) that no answer may show: each
    as a whole path ('/root/x', not the '/root' of 'bags/rooted'), the longest first; None when none."""
    import re
    from pathlib import Path

    folders = {str(store), str(Path(store).resolve()), os.path.expanduser("~"), str(root or "")}
    for var in ("VREC_CACHE_DIR", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME", "TORCH_HOME"):
        folders.add(os.environ.get(var, ""))
    # absolute paths only: a relative store name such as 'store' is also an everyday word in a sentence
    folders = sorted({f.rstrip("/") for f in folders if os.path.isabs(f) and len(f.rstrip("/")) > 1},
                     key=len, reverse=True)
    if not folders:
        return None
    return re.compile(r"(?<![\w.~-])(?:" + "|".join(map(re.escape, folders)) + r")(?![\w.~-])")


def open_experiment(svc: Service, name: str | None, arms, split, exposure_log):
    """The A/B experiment /api/recommend serves (vrec.ab.Experiment), or None without --experiment."""
    if name is None:
        if arms is not None or exposure_log is not None:
            raise VrecError("--arms and --exposure-log belong to an experiment; add --experiment NAME.")
        return None
    from vrec.experiments.ab import Experiment

    return Experiment(name, arms, split, store=svc.live.current(), exposure_log=exposure_log)


def compare_records(snap: Snapshot, model: str, table, query_id: str | None = None) -> list[dict]:
    """Result dicts of one side of a comparison, with each neighbour's metadata from the catalog; in a
    catalog of products each neighbour shows its photo closest to the product ``query_id``."""
    from vrec.base.records import json_safe

    cat = snap.table(model)
    positions = [snap.position(model, str(i)) for i in table["id"]]
    photos = best_photos(snap, model, query_id, [p for p in positions if p is not None])
    out = []
    for (_, r), pos in zip(table.iterrows(), positions):
        rec = item_record(cat.iloc[pos]) if pos is not None else {"title": None, "metadata": {}, "photos": None}
        photo = photos.get(pos)
        out.append(json_safe({"rank": int(r["rank"]), "id": str(r["id"]), "score": float(r["score"]),
                              "probability": None, "thumb": thumb_url(photo or r["id"]), "title": rec["title"],
                              "metadata": rec["metadata"], "photo": photo, "photos": rec["photos"]}))
    return out


def compare_summary(summary) -> dict | None:
    """The API's CompareSummary of a comparison's catalog summary (``vrec.search.compare.Summary``), or None."""
    from vrec.base.records import json_safe, to_records

    if summary is None:
        return None
    per = None
    if summary.per_label is not None:
        per = [{"value": str(r[summary.label]), "items": int(r["items"]), "left": r["left"], "right": r["right"]}
               for r in to_records(summary.per_label)]
    return json_safe({"items": summary.items, "k": summary.k, "mean_overlap": summary.mean_overlap,
                      "label": summary.label, "labelled": summary.labelled, "left_agreement": summary.left_agreement,
                      "right_agreement": summary.right_agreement, "sampled": summary.sampled, "per_label": per})


def best_photos(snap: Snapshot, model: str, query_id: str | None, positions: list[int]) -> dict:
    """In a catalog of products: for each product (by table position), the id of its photo closest to
    the product ``query_id``'s vector; {} otherwise."""
    if query_id is None or not positions or not snap.has_products(model):
        return {}
    ms = snap.model(model)
    cat = snap.table(model)
    q = snap.position(model, query_id)
    if q is None:
        return {}
    query = ms.vectors_for_rows([int(cat["row"].iloc[q])])
    rows = cat["row"].to_numpy()[positions][None, :]
    photo_rows = ms.best_photos(query, rows)[0]
    photos = ms.photos.items()
    ids = dict(zip(photos["row"].to_numpy().tolist(), photos["id"].astype(str)))
    return {p: ids.get(int(r)) for p, r in zip(positions, photo_rows.tolist())}


def gallery_result(svc: Service, snap: Snapshot, body) -> tuple[str, object]:
    """The title and a SearchResult for vrec.pages.search_html from a posted gallery."""
    import pandas as pd

    from vrec.search.query import INTERNAL_COLUMNS, SearchResult

    if not isinstance(body, dict):
        raise QueryError('The gallery must be a JSON object like {"title": "...", "results": [{"id": ..., '
                         '"score": ...}]}, sent with Content-Type: application/json.')
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
    positions, scores, photos = [], [], []
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not isinstance(r.get("id"), str):
            raise QueryError(f"Gallery result {i + 1} has no \"id\"; each result needs an id and a score.")
        try:
            check_number(f"the score of gallery result {i + 1}", r.get("score"))
        except VrecError as e:
            raise QueryError(str(e)) from None
        pos = snap.position(model, r["id"])
        if pos is None:
            raise UnknownItem(f"Gallery result {i + 1} ({r['id']!r}) is not an item in the store.")
        positions.append(pos)
        scores.append(float(r["score"]))
        photos.append(gallery_photo(snap, model, str(cat["id"].iloc[pos]), r.get("photo")))
    table = cat.iloc[positions].drop(columns=list(INTERNAL_COLUMNS), errors="ignore").reset_index(drop=True)
    for i, (item_id, stored) in enumerate(zip(table["id"], table["path"])):
        if photos[i] is not None:  # a product shown with the photo that matched best
            item_id, stored = photos[i]
        try:  # the same rule as /thumb/: a photo outside the catalog folder is never read (its card stays empty)
            table.loc[i, "path"] = str(Thumbnails.photo_path(snap, str(stored), str(item_id)))
        except UnknownItem:
            table.loc[i, "path"] = ""
    table.insert(0, "score", pd.Series(scores, dtype="float32"))
    table.insert(0, "rank", range(1, len(table) + 1))
    query = body.get("query") if isinstance(body.get("query"), str) and body.get("query").strip() else title
    return title, SearchResult(query.strip()[:200], "gallery", model, table)


def gallery_photo(snap: Snapshot, model: str, product: str, photo) -> tuple[str, str] | None:
    """(photo id, stored path) of a gallery result's ``photo`` when it is one of that product's photos."""
    if not isinstance(photo, str) or not snap.has_products(model):
        return None
    pos = snap.photo_position(model, photo)
    if pos is None:
        return None
    row = snap.photos(model).items().iloc[pos]
    return (photo, str(row["path"])) if str(row["product"]) == product else None


# --- curated collections ------------------------------------------------------------------------

def collection_record(snap: Snapshot, c) -> dict:
    """A Collection of the API from a ``vrec.search.collections.Collection``: each item with its title,
    thumbnail and whether the store still holds it; the query's photo by file name only."""
    from dataclasses import asdict
    from pathlib import Path

    query = asdict(c.query)
    if query.get("image"):
        query["image"] = Path(query["image"]).name  # never a folder of the server
    try:
        cat = snap.table(c.query.model)
    except VrecError:  # the model left the store: items without titles, all unavailable
        cat = None
    items = []
    for it in c.items:
        pos = snap.position(c.query.model, it.id) if cat is not None else None
        title = _title(cat.iloc[pos].to_dict()) if pos is not None else None
        items.append({"id": it.id, "pinned": bool(it.pinned), "note": it.note, "added": it.added, "title": title,
                      "thumb": thumb_url(it.id), "available": pos is not None})
    return {"name": c.name, "query": query, "items": items, "removed": list(c.removed), "created": c.created,
            "updated": c.updated, "by": c.by, "version": int(c.version)}


def collection_summary(c) -> dict:
    from dataclasses import asdict
    from pathlib import Path

    query = asdict(c.query)
    if query.get("image"):
        query["image"] = Path(query["image"]).name
    return {"name": c.name, "items": len(c.items), "pinned": sum(bool(i.pinned) for i in c.items), "query": query,
            "updated": c.updated, "by": c.by, "version": int(c.version)}


def keyword_state(snap) -> dict:
    """What /api/health says of the store's keyword index: its columns and size, and so the text mode."""
    if not has_keywords(snap):
        return {"keywords": None, "text_mode": "vector"}
    try:
        stats = keyword_stats(snap)
    except (VrecError, OSError, ValueError, sqlite3.Error):  # another version's index, or a damaged one: searches say to rebuild
        return {"keywords": None, "text_mode": "hybrid"}
    return {"keywords": {"columns": stats["columns"], "documents": stats["documents"]}, "text_mode": "hybrid"}
