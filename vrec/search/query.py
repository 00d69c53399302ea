"""Search the catalog by text or by image, returning plain tables.

Scores: ``score`` is the cosine similarity of unit vectors (1 = same direction). For text queries
on SigLIP-type models, ``probability`` is the model's own match probability,
sigmoid(logit_scale * cosine + logit_bias): SigLIP was trained to output exactly this per
image-text pair, so unlike a softmax over results it means the same thing in every query.
"""
from __future__ import annotations

import difflib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vrec.base.errors import QueryError, UnknownItem, check_number, suggest
from vrec.models.adapter import AdaptedEncoder, base_name, load_adapter
from vrec.models.registry import check_model_name
from vrec.store.catalog_rows import TableRows, catalog_rows, positions_of
from vrec.store.catalog_table import catalog_table
from vrec.store.filters import INTERNAL as INTERNAL_COLUMNS  # used to search, never shown nor exported
from vrec.store.filters import apply_filters, filter_columns
from vrec.store.index import search_rows
from vrec.store.products import check_scoring
from vrec.store.store import ModelStore, Store, as_store

DEFAULT_TEMPLATE = "a photo of {}."
MAX_WEIGHT = 10.0  # --weight range is 0..MAX_WEIGHT: beyond it the text alone decides the ranking


@dataclass
class SearchResult:
    """A query and its ranked results (``table``: rank, score, [probability], id, path, metadata...)."""

    query: str
    kind: str  # "text" or "image"
    model: str
    table: object  # pandas.DataFrame
    query_path: str | None = None  # the query photo, for pictures of the query
    query_item: dict | None = None  # the catalog item queried by id, with its metadata
    timings: dict = field(default_factory=dict)  # seconds per phase
    notes: list[str] = field(default_factory=list)


def open_model(store: str | os.PathLike | Store | None, model: str,
               product_score: str | None = None) -> tuple[Store, ModelStore]:
    """The store and one model's vectors in it; a name no model can have is refused first, in the
    registry's words (before the store is asked for a folder of that name). A catalog of products
    with several photos answers one row per product, scored by ``product_score`` (see
    ``vrec.store.products``; default max)."""
    check_model_name(model)
    if product_score is not None:
        check_scoring(product_score)
    st = as_store(store)
    ms = st.model(model)
    return st, (ms.with_scoring(product_score) if hasattr(ms, "with_scoring") else ms)


def load_encoder(ms: ModelStore, weights: str | None = None, device: str = "auto", text_only: bool = False,
                 precision: str = "fp32"):
    """The encoder that made a store's vectors, refusing one whose configuration differs.

    Texts go through the ONNX export of the text tower when there is one (no torch import):
    see ``vrec.models.encoders.query_encoder``. A model that ``vrec adapt`` derived answers with its
    base model's encoder followed by its adapter (``vrec.models.adapter``).
    """
    from vrec.models.encoders import query_encoder

    check_config(ms, weights)  # before the (slow) build
    adapter = load_adapter(ms.path, ms.config)
    enc = query_encoder(base_name(ms.name), weights=weights, device=device, text_only=text_only, precision=precision)
    return enc if adapter is None else AdaptedEncoder(enc, adapter, ms.name)


def check_config(ms: ModelStore, weights: str | None = None) -> None:
    """Refuse to query a store's vectors with an encoder configured otherwise than the one that made them."""
    from vrec.models.registry import resolve
    from vrec.models.weights import expected_config

    ms.check_config(expected_config(resolve(ms.name), weights))


def _tail_matches(table, text: str) -> list[int]:
    """Positions whose id or path ends with ``/text`` (a short id such as 'bag-tote-red')."""
    for col in ("id", "path"):
        tail = np.flatnonzero(table[col].astype(str).str.endswith("/" + text).to_numpy())
        if len(tail):
            return [int(p) for p in tail]
    return []


def resolve_item(table, text: str) -> int | None:
    """Position of the item called ``text`` (its id, or a unique id/path ending), or None.

    None also when the ending is ambiguous; ``unknown_item`` then lists the candidates.
    """
    ids = table["id"].astype(str)
    exact = np.flatnonzero((ids == text).to_numpy())
    if len(exact):
        return int(exact[0])
    tail = _tail_matches(table, text)
    return tail[0] if len(tail) == 1 else None


def unknown_item(table, text: str, photos: bool = True) -> UnknownItem:
    """The error for a query that ``resolve_item`` did not find: ambiguous, or unknown with close ids.

    ``photos``: whether the query could also have been a photo's path (the command line); the web
    API takes catalog ids only, and its sentence says so.
    """
    tail = _tail_matches(table, text)
    if len(tail) > 1:
        ids = table["id"].astype(str).iloc[tail].tolist()
        shown = ", ".join(map(repr, ids[:5])) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        return UnknownItem(f"{text!r} is ambiguous: {len(ids)} items end with it ({shown}); give the full id.")
    ids = table["id"].astype(str).tolist()
    hint = suggest(text, ids)
    if not hint:  # a mistyped short id: compare with the last part of each id, name the full ids
        by_stem: dict[str, list[str]] = {}
        for i in ids:
            by_stem.setdefault(i.rsplit("/", 1)[-1], []).append(i)
        close = difflib.get_close_matches(text, list(by_stem), n=3, cutoff=0.6)
        full = [i for stem in close for i in by_stem[stem]][:3]
        hint = (" Did you mean " + " or ".join(map(repr, full)) + "?") if full else ""
    if photos:
        return UnknownItem(f"{text!r} is neither an item id in the store nor an image file.{hint}")
    return UnknownItem(f"No item {text!r} in the catalog; give an id as the search results show it "
                       f"(or its unique last part).{hint}")


def _rank(st, ms, catalog, queries: np.ndarray, k: int, filters: Sequence[str], exclude: set[int] = frozenset(),
          collapse: str | None = None):
    """The k best items (products) for one query vector, as the result table, and notes.

    ``catalog``: the catalog table, whole (``TableRows``) or read as needed (``CatalogRows``: an
    unfiltered query reads its k rows only, a filtered one the filters' columns too).
    ``exclude``: table positions never returned (the query item, its variants); ``collapse``: a
    column of which each value appears once (the best item of each group, e.g. of an item_group_id),
    found by fetching more results until k groups are seen.
    """
    check_number("--k", k, min=1, integer=True)
    k = int(k)
    matching, table_rows = _matching(catalog, filters)
    mask = matching.copy()
    if exclude:
        mask[list(exclude)] = False
    groups = _group_keys(catalog, collapse)
    available = int(mask.sum()) if groups is None else len(set(groups[mask]))
    notes = _shortfall_notes(ms, matching, available, k, bool(exclude), collapse)
    if not matching.all() or len(exclude) > 1:
        allowed = (table_rows if table_rows is not None else catalog.frame([])["row"].to_numpy())[mask]
    else:
        allowed = None
    fetch = min(k, available) + (len(exclude) if allowed is None else 0)
    while True:
        rows, scores, photos = _search(ms, queries, fetch, allowed)
        pos = catalog.positions(rows[0])
        keep = [j for j, p in enumerate(pos) if p not in exclude]
        if groups is not None:
            seen: set = set()
            keep = [j for j in keep if not (groups[pos[j]] in seen or seen.add(groups[pos[j]]))]
        if len(keep) >= min(k, available) or len(rows[0]) < fetch:
            break
        fetch *= 4
    keep = keep[:k]
    out = catalog.take([pos[j] for j in keep])
    out.insert(0, "score", scores[0][keep].astype(np.float32))
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    if photos is not None:
        best_photo(ms, out, photos[0][keep])
    return out.drop(columns=list(INTERNAL_COLUMNS), errors="ignore").reset_index(drop=True), notes


def _photo_row(ms, text: str) -> tuple[int, str, str] | None:
    """(global row, product id, path) of the photo whose id is ``text`` in a product store, or None."""
    if getattr(ms, "grain", "photo") != "product":
        return None
    photos = ms.photos.items()
    at = np.flatnonzero((photos["id"].astype(str) == text).to_numpy())
    if not len(at):
        return None
    row = photos.iloc[int(at[0])]
    return int(row["row"]), str(row["product"]), str(row["path"])


def _same_group(st, table, pos: int, column: str | None) -> set[int]:
    """Positions of the items in the same group as item ``pos`` (its variants)."""
    column = column or st.info().get("group_column") or "item_group_id"
    if column not in table.columns:
        raise QueryError(f"--exclude-same-group needs a group column, and the catalog has no {column!r}; name one "
                         f"with --collapse COLUMN.{suggest(column, list(map(str, table.columns)))}")
    value = table[column].iloc[pos]
    if value != value or str(value).strip() == "":  # no group: only the item itself
        return set()
    return set(np.flatnonzero((table[column] == value).to_numpy()).tolist())


def _matching(catalog, filters: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Which rows of the catalog match the filters, and their ``row`` (None without filters),
    reading only the columns the filters name (all of them when one names no column, for its error)."""
    if not filters:
        return np.ones(len(catalog), bool), None
    columns = filter_columns(filters, catalog.columns)
    frame = catalog.frame([c for c in catalog.columns if c not in INTERNAL_COLUMNS] if columns is None else columns)
    return apply_filters(frame, filters), frame["row"].to_numpy()


def _group_keys(catalog, collapse: str | None):
    """Each item's group for --collapse (an item without a value is a group of its own), or None."""
    if collapse is None:
        return None
    if collapse not in catalog.columns:
        raise QueryError(f"No column {collapse!r} to --collapse by.{suggest(collapse, list(map(str, catalog.columns)))}")
    table = catalog.frame([collapse, "id"])
    values = table[collapse].astype("string").fillna("").str.strip()
    own = "\0" + table["id"].astype(str)  # no value: the item alone
    return values.where(values != "", own).to_numpy(dtype=object)


def _shortfall_notes(ms, matching, available: int, k: int, excluded: bool, collapse: str | None) -> list[str]:
    """A note when fewer than k results exist: the filters, the catalog or --collapse leave fewer."""
    if available >= k:
        return []
    unit = f"{collapse} group{'s' if available != 1 else ''}" if collapse else f"item{'s' if available != 1 else ''}"
    besides = " besides the query" if excluded else ""
    if not matching.all():
        return [f"only {available} {unit} match the filters"]
    if available:
        return [f"the catalog holds only {available} {unit}{besides}; all are shown"]
    return [f"model {ms.name!r} holds no items{besides}"]


def _search(ms, queries: np.ndarray, k: int, allowed):
    """Rows and scores of the k best items; for products also each one's best-matching photo row."""
    if getattr(ms, "grain", "photo") == "product":
        return ms.search_products(queries, k, allowed)
    rows, scores = search_rows(ms, queries, k, allowed_rows=allowed)
    return rows, scores, None


def best_photo(ms, out, photo_rows: np.ndarray) -> None:
    """Show each product result with the photo that matched best: its ``path``, and its id as ``photo``
    (reading those photos' rows only)."""
    photos = ms.photos.items_at(photo_rows)
    out["path"] = photos["path"].to_numpy() if len(photos) else []
    out.insert(out.columns.get_loc("id") + 1, "photo", photos["id"].to_numpy() if len(photos) else [])


def _positions(table, rows: np.ndarray) -> list[int]:
    """Positions in ``table`` of global rows (see ``positions_of``)."""
    return positions_of(table["row"].to_numpy(), rows)


def search_text(query: str, k: int = 10, model: str = "siglip", store=None, template: str = DEFAULT_TEMPLATE,
                filters: Sequence[str] = (), weights: str | None = None, device: str = "auto", encoder=None,
                precision: str = "fp32", product_score: str | None = None, collapse: str | None = None) -> SearchResult:
    """Rank catalog items by how well they match a text, e.g. "minimalist leather tote".

    Only the text tower is loaded: its ONNX export when there is one (no torch), else torch.
    ``result.timings`` holds the seconds of each phase: on the ONNX path onnxruntime import,
    session, tokenise and encode; on torch torch+open_clip import, model load and text encoding.
    """
    if not query or not query.strip():
        raise QueryError("The query is empty; give a few words, e.g. vrec search-text \"red leather bag\".")
    if "{}" not in (template or ""):
        raise QueryError(f"--template {template!r} has no {{}} for the query; write it like 'a photo of {{}}.' "
                         "(or '{}' to use the query as typed).")
    check_number("--k", k, min=1, integer=True)
    clock = [time.perf_counter()]
    timings = {}

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        timings[name] = clock[-1] - clock[-2]

    from vrec.models.encoder_base import no_text_tower
    from vrec.models.registry import resolve

    if encoder is None and not resolve(model).text:  # say so before loading anything
        raise no_text_tower(model)
    st, ms = open_model(store, model, product_score)
    text = template.replace("{}", query.strip())
    # The text tower loads (and encodes the query) on a second thread while this one reads the
    # catalog: onnxruntime releases the GIL while it builds its session, so on a cold start the
    # two overlap and the pandas import, most of "store", costs almost nothing.
    tower = None
    if encoder is None:
        t = time.perf_counter()
        check_config(ms, weights)  # here, so that only this thread touches the model store
        adapter = load_adapter(ms.path, ms.config)
        tower = _Background(_load_and_encode, ms.name, weights, device, precision, text, time.perf_counter() - t,
                            adapter)
    meta_notes: list[str] = []
    catalog = catalog_rows(st, ms, meta_notes)
    if tower is not None:
        _prepare_search(ms, filters)
    lap("store")
    if tower is None:
        enc, q = encoder, encoder.encode_texts([text])
        lap("text encoding")
    else:
        enc, q, phases = tower.result()
        lap("waiting for the text tower")
        timings.update(phases)
        if q is None:  # a torch encoder that is to export its text tower: not on a second thread
            q = enc.encode_texts([text])
            lap("text encoding")
            onnx = getattr(getattr(enc, "_onnx", None), "last_timings", None)
            if onnx:  # exported just now: tokenising and encoding apart, the rest is the export
                spent = timings.pop("text encoding")
                timings.update(onnx)
                timings["onnx export"] = max(0.0, spent - sum(onnx.values()))
    out, notes = _rank(st, ms, catalog, q, k, filters, collapse=collapse)
    if enc.logit_bias is not None:
        z = enc.logit_scale * out["score"].to_numpy(np.float64) + enc.logit_bias
        out.insert(2, "probability", (1.0 / (1.0 + np.exp(-z))).astype(np.float32))
    lap("search")
    return SearchResult(query, "text", model, out, notes=meta_notes + notes, timings=timings)


def _prepare_search(ms, filters: Sequence[str]) -> None:
    """What the search needs next, done while the text tower loads on its thread: the pandas and
    pyarrow imports (reading the catalog's rows) and, for an unfiltered search, the HNSW index."""
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from vrec.base.errors import StaleIndex
    from vrec.store.index import EXACT_BELOW, loaded_index

    if filters or getattr(ms, "grain", "photo") == "product" or not ms.manifest().get("index"):
        return
    if ms.live_count() >= EXACT_BELOW:
        try:
            loaded_index(ms)
        except StaleIndex:  # the search says so
            pass


def _load_and_encode(model: str, weights, device: str, precision: str, text: str, checked: float, adapter=None):
    """The query encoder and the query's vector (None when encoding would export the text tower
    first: that is left to the caller's thread), with the seconds of each loading phase; a derived
    model's ``adapter`` goes on top of its base model's encoder."""
    from vrec.models.encoders import query_encoder

    t0 = time.perf_counter()
    enc = query_encoder(base_name(model), weights=weights, device=device, text_only=True, precision=precision)
    if adapter is not None:
        enc = AdaptedEncoder(enc, adapter, model)
    phases = dict(getattr(enc, "load_timings", None) or {})
    phases["checks"] = checked + phases.get("checks", 0.0) + max(0.0, time.perf_counter() - t0 - sum(phases.values()))
    if getattr(enc, "export_pending", None):
        return enc, None, phases
    t1 = time.perf_counter()
    q = enc.encode_texts([text])
    onnx = getattr(enc, "last_timings", None)
    phases.update(onnx if onnx else {"text encoding": time.perf_counter() - t1})
    return enc, q, phases


class _Background:
    """A call on a daemon thread (an interrupted query exits without waiting for it); ``result()``
    returns its value or raises its exception in the caller's thread."""

    def __init__(self, fn, *args):
        import threading

        self._value = self._error = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True, name="vrec-text-tower")
        self._thread.start()

    def _run(self, fn, args) -> None:
        try:
            self._value = fn(*args)
        except BaseException as e:  # re-raised in the caller's thread
            self._error = e

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def search_image(query: str, k: int = 10, model: str = "siglip", store=None, filters: Sequence[str] = (),
                 plus: Sequence[str] = (), minus: Sequence[str] = (), weight: float = 1.0,
                 weights: str | None = None, device: str = "auto", encoder=None, image=None,
                 product_score: str | None = None, collapse: str | None = None,
                 exclude_same_group: bool = False) -> SearchResult:
    """Items that look like a photo or a catalog item ("find similar"), optionally steered by text.

    With ``plus``/``minus`` the query becomes the unit image vector plus ``weight`` times each
    "plus" text vector, minus each "minus" one (e.g. a coat photo plus "handbag" to complete a look).
    ``image`` is the query photo itself (bytes, e.g. an upload, or a PIL image); ``query`` is then
    only its name in the result and is never opened as a file or looked up as an item.
    ``collapse``: one result per value of that column (e.g. item_group_id: one colour of a shirt);
    ``exclude_same_group``: for a catalog item, leave out the items of its group (its variants) --
    the ``collapse`` column, else the feed's group column (item_group_id).
    """
    from vrec.ingest.catalog import BadImage, decode_image, load_image, to_rgb
    from vrec.ingest.feed_source import local_photo

    if not query or not str(query).strip():
        raise QueryError("The query is empty; give a photo path or a catalog item id.")
    check_number("--k", k, min=1, integer=True)
    check_number("--weight", weight, min=0, max=MAX_WEIGHT,
                 hint="it scales each --plus/--minus text vector against the unit image vector (default 1)")
    st, ms = open_model(store, model, product_score)
    meta_notes: list[str] = []
    table = catalog_table(st, ms, meta_notes)
    pos = resolve_item(table, str(query)) if image is None else None
    photo = _photo_row(ms, str(query)) if image is None and pos is None else None
    if photo is not None:  # one photo of a product (PRODUCT/2): that photo's vector, for its product
        pos = resolve_item(table, photo[1])
    enc = encoder
    exclude: set[int] = set()
    query_path = query_item = None
    if image is not None:
        enc = enc or load_encoder(ms, weights, device)
        try:
            img = to_rgb(image) if hasattr(image, "mode") else decode_image(bytes(image),
                                                                         min_size=enc.preprocess_spec.decode_size)
        except BadImage as e:
            raise QueryError(f"Cannot use {str(query)!r} as a query image: {e}.") from None
        q = enc.encode_images([img])
    elif pos is not None:
        q = ms.vectors_for_rows([int(table["row"].iloc[pos])]) if photo is None else \
            ms.photos.vectors_for_rows([photo[0]])
        exclude = {pos} | (_same_group(st, table, pos, collapse) if exclude_same_group else set())
        query_path = str(local_photo(st.info(), photo[2] if photo else str(table["path"].iloc[pos])) or "")
        query_item = table.iloc[pos].drop(labels=list(INTERNAL_COLUMNS), errors="ignore").to_dict()
    elif Path(query).is_file():
        enc = enc or load_encoder(ms, weights, device)
        try:  # decoded exactly as catalog photos are, so a catalog file finds itself with score 1
            img = load_image(query, min_size=enc.preprocess_spec.decode_size)
        except BadImage as e:
            raise QueryError(f"Cannot use {str(query)!r} as a query image: {e}.") from None
        q = enc.encode_images([img])
        query_path = str(query)
    else:
        raise unknown_item(table, str(query))
    if plus or minus:
        enc = enc or load_encoder(ms, weights, device)
        steer = np.zeros_like(q[0])
        if plus:
            steer += enc.encode_texts(list(plus)).sum(0)
        if minus:
            steer -= enc.encode_texts(list(minus)).sum(0)
        q = q + weight * steer
        q = q / max(float(np.linalg.norm(q)), 1e-12)
    out, notes = _rank(st, ms, TableRows(table), q.astype(np.float32), k, filters, exclude, collapse)
    if exclude_same_group and pos is None:
        notes.append("--exclude-same-group applies to a catalog item as the query (its variants); a photo has no "
                     "group, so nothing was left out")
    label = str(query) + "".join(f" +{p!r}" for p in plus) + "".join(f" -{m!r}" for m in minus)
    return SearchResult(label, "image", model, out, query_path=query_path, query_item=query_item,
                        notes=meta_notes + notes)
