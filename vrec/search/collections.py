"""Curated collections: a named, ordered list of catalog items a merchandiser keeps and edits.

A collection starts from a query (a text, a photo or a catalog item), holds the items that query
found, and is then curated by hand: items are pinned, removed, reordered, annotated or added.
It is saved in the store as ``collections/NAME.json`` (written atomically) and can be reopened,
refreshed (its query run again over the store's current items: pinned and kept items stay where
they are, removed ones stay out, new matches are appended) and exported.

Saving is checked, never last-writer-wins: each saved collection has a ``version``, and
:func:`save` refuses (``CollectionConflict``) when the file's version is no longer the one the
collection was loaded at -- two browser tabs or two people editing the same collection would
otherwise lose each other's pins. Items are catalog ids (products, in a catalog of products).
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vrec.base.errors import (
    CollectionConflict,
    CollectionError,
    QueryError,
    StoreError,
    UnknownCollection,
    check_number,
    suggest,
)
from vrec.base.files import now, read_json, write_json
from vrec.base.userfiles import describe
from vrec.store.store import as_store

FOLDER = "collections"
SCHEMA_VERSION = 1
MAX_NAME = 80
MAX_ITEMS = 1000  # items in one collection (and results a query may bring in)
MAX_NOTE = 2000  # characters of one note
KINDS = ("text", "image", "item")
NAME_RULE = "letters, digits, '-', '_' and spaces, at most 80 characters"
_NAME = re.compile(r"[A-Za-z0-9_\- ]+")
DEFAULT_K = 24


@dataclass
class CollectionQuery:
    """What a collection was made from: a text, a photo (its path) or a catalog item, searched with a
    model, filters and k results."""

    kind: str  # text, image or item
    text: str | None = None  # the text (kind text)
    item: str | None = None  # the catalog item id (kind item)
    image: str | None = None  # the photo's path (kind image)
    model: str = "siglip"
    filters: list[str] = field(default_factory=list)
    k: int = DEFAULT_K

    def label(self) -> str:
        what = {"text": self.text, "item": self.item, "image": self.image}.get(self.kind) or ""
        return f"{self.kind}: {what}"


@dataclass
class CollectionItem:
    id: str
    pinned: bool = False
    note: str = ""
    added: str = field(default_factory=now)  # ISO time it came into the collection


@dataclass
class Collection:
    name: str
    query: CollectionQuery
    items: list[CollectionItem] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # ids a refresh must not bring back
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    by: str = ""  # who saved it last
    version: int = 0  # 0: never saved; each save adds one

    @property
    def ids(self) -> list[str]:
        return [i.id for i in self.items]

    def to_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Collection:
        q = dict(d.get("query") or {})
        query = CollectionQuery(**{k: v for k, v in q.items() if k in CollectionQuery.__dataclass_fields__})
        items = [CollectionItem(**{k: v for k, v in i.items() if k in CollectionItem.__dataclass_fields__})
                 for i in d.get("items") or []]
        return cls(name=d["name"], query=query, items=items, removed=list(d.get("removed") or []),
                   created=d.get("created") or now(), updated=d.get("updated") or now(), by=d.get("by") or "",
                   version=int(d.get("version") or 0))


@dataclass
class Refreshed:
    """A refreshed collection (not saved yet), the ids it gained and those that left the store."""

    collection: Collection
    new: list[str]
    gone: list[str]
    notes: list[str] = field(default_factory=list)


# --- names and files ----------------------------------------------------------------------------

def check_name(name) -> str:
    """The name, if it can name a collection (and its file); a CollectionError in one sentence otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise CollectionError(f"A collection needs a name ({NAME_RULE}), e.g. 'minimalist jewellery'.")
    shown = name if len(name) <= 40 else name[:37] + "..."
    if len(name) > MAX_NAME:
        raise CollectionError(f"The collection name {shown!r} is {len(name)} characters long; keep it to {MAX_NAME}.")
    if not _NAME.fullmatch(name):
        bad = "".join(dict.fromkeys(c for c in name if not _NAME.fullmatch(c)))
        raise CollectionError(f"The collection name {shown!r} has characters a name cannot hold ({bad!r}); "
                              f"use {NAME_RULE}.")
    if name != name.strip():
        raise CollectionError(f"The collection name {shown!r} starts or ends with a space; leave those out.")
    return name


def folder(store) -> Path:
    st = as_store(store)
    st.info()  # a missing store: its own sentence
    return st.path / FOLDER


def path_of(store, name: str) -> Path:
    return folder(store) / f"{check_name(name)}.json"


def file_name(name: str, suffix: str) -> str:
    """The export's own file name, from the collection's name: 'Minimalist jewellery' -> minimalist-jewellery.html."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "collection"
    return f"{slug}{suffix}"


@contextlib.contextmanager
def _locked(store) -> Iterator[None]:
    """Collections of one store are written one at a time (between processes too): a version is checked
    and the file replaced without another writer in between."""
    d = folder(store)
    try:
        d.mkdir(exist_ok=True)
        f = open(d / ".lock", "a")
    except OSError as e:
        raise StoreError(f"Cannot write collections in {str(d)!r} ({e.strerror or e}); check the store's "
                         "permissions.") from None
    with f:
        try:
            import fcntl
        except ImportError:  # no advisory locks here: the version check alone
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def default_by() -> str:
    """Who saves: the OS user name."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a container without one)
        return "unknown"


# --- load, save, list, delete ---------------------------------------------------------------------

def names(store) -> list[str]:
    d = folder(store)
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json") if _NAME.fullmatch(p.stem))


def _unknown(store, name: str) -> UnknownCollection:
    have = names(store)
    listed = f" (it has {', '.join(map(repr, have[:10]))}{' ...' if len(have) > 10 else ''})" if have else \
        " (it has none yet)"
    return UnknownCollection(f"No collection {name!r} in this store{listed}; 'vrec collection list' shows "
                             f"them.{suggest(name, have)}")


def load(store, name: str) -> Collection:
    p = path_of(store, name)
    if not p.is_file():
        raise _unknown(store, name)
    d = read_json(p)
    if not isinstance(d, dict) or "name" not in d or int(d.get("schema_version", 1)) > SCHEMA_VERSION:
        raise StoreError(f"{str(p)!r} is not a collection this vrec reads; restore it, or upgrade vrec.")
    c = Collection.from_dict(d)
    c.name = name
    return c


def _version_on_disk(p: Path) -> int:
    if not p.is_file():
        return 0
    return int(read_json(p).get("version") or 0)


def save(store, collection: Collection, expected_version: int | None = None, by: str | None = None) -> Collection:
    """Write the collection, if the saved one is still at ``expected_version`` (default: the version it
    was loaded at; 0: a new collection, not saved yet). Returns it with its new version."""
    expected = collection.version if expected_version is None else int(expected_version)
    p = path_of(store, collection.name)
    check_items(collection)
    with _locked(store):
        on_disk = _version_on_disk(p)
        if on_disk != expected:
            raise _conflict(collection.name, on_disk, expected)
        collection.version = on_disk + 1
        collection.updated = now()
        collection.by = by or collection.by or default_by()
        write_json(p, collection.to_dict())
    return collection


def _conflict(name: str, on_disk: int, expected: int) -> CollectionConflict:
    if expected == 0:
        return CollectionConflict(f"A collection named {name!r} exists already; choose another name, or open that one.")
    if on_disk == 0:
        return CollectionConflict(f"The collection {name!r} has been deleted since it was loaded; create it again "
                                  "to keep these edits.")
    return CollectionConflict(f"The collection {name!r} was saved by someone else since it was loaded (version "
                              f"{on_disk}, not {expected}); reload it and make the edits again, so that their pins "
                              "are not lost.")


def list_collections(store) -> list[Collection]:
    return [load(store, n) for n in names(store)]


def delete(store, name: str) -> None:
    p = path_of(store, name)
    with _locked(store):
        if not p.is_file():
            raise _unknown(store, name)
        try:
            p.unlink()
        except OSError as e:
            raise StoreError(f"Cannot delete {str(p)!r} ({e.strerror or e}); check the store's permissions.") from None


# --- running the query ---------------------------------------------------------------------------

def make_query(text: str | None = None, item: str | None = None, image: str | os.PathLike | None = None,
               model: str = "siglip", filters: Sequence[str] = (), k: int = DEFAULT_K) -> CollectionQuery:
    """The query of a new collection: exactly one of a text, a catalog item id or a photo file."""
    given = [w for w, v in (("text", text), ("item", item), ("image", image)) if v is not None and str(v).strip()]
    if len(given) != 1:
        raise QueryError("A collection starts from one query: a text, a catalog item or a photo "
                         f"({'none was given' if not given else ' and '.join(given) + ' were given'}).")
    check_number("k", k, min=1, max=MAX_ITEMS, integer=True)
    filters = [f for f in filters if f.strip()]
    if given[0] == "image":
        p = Path(image)
        why = describe(p)  # a pipe, a device, a folder, a broken link...: said as what it is
        if why is not None:
            raise QueryError(f"Photo {str(image)!r} {why}; give the path of a photo file.")
        return CollectionQuery("image", image=str(p.resolve()), model=model, filters=filters, k=int(k))
    if given[0] == "item":
        return CollectionQuery("item", item=str(item).strip(), model=model, filters=filters, k=int(k))
    return CollectionQuery("text", text=str(text).strip(), model=model, filters=filters, k=int(k))


def run_query(store, query: CollectionQuery, k: int | None = None, encoder=None):
    """The query's SearchResult over the store's current items (``k`` results, default the query's);
    ``encoder``: a loaded text encoder for a text query (the server's)."""
    from vrec.search.query import search_image, search_text

    k = int(k or query.k)
    if query.kind == "text":
        return search_text(query.text or "", k=k, model=query.model, store=store, filters=query.filters,
                           encoder=encoder)
    if query.kind == "item":
        return search_image(query.item or "", k=k, model=query.model, store=store, filters=query.filters)
    if query.kind == "image":
        if not query.image or not Path(query.image).is_file():
            raise QueryError(f"The collection's query photo {query.image!r} is no longer there; refresh needs it "
                             "(or make a new collection).")
        return search_image(query.image, k=k, model=query.model, store=store, filters=query.filters)
    raise QueryError(f"Unknown query kind {query.kind!r}; a collection's query is one of {', '.join(KINDS)}.")


def _catalog(store, model: str):
    """The model's catalog table (one row per product in a catalog of products)."""
    from vrec.search.query import open_model
    from vrec.store.catalog_table import catalog_table

    st, ms = open_model(store, model)
    return catalog_table(st, ms, [])


def resolve_ids(store, model: str, ids: Iterable[str], table=None) -> list[str]:
    """Full catalog ids of ``ids`` (an id or its unique ending), refusing an unknown one with a suggestion."""
    from vrec.search.query import resolve_item, unknown_item

    table = _catalog(store, model) if table is None else table
    known = table["id"].astype(str)
    exact = set(known)
    out = []
    for i in ids:
        i = str(i)
        if i in exact:
            out.append(i)
            continue
        pos = resolve_item(table, i)
        if pos is None:
            raise unknown_item(table, i, photos=False)
        out.append(str(known.iloc[pos]))
    return out


def create(store, name: str, query: CollectionQuery, by: str | None = None, encoder=None) -> Collection:
    """A new collection named ``name`` holding what ``query`` finds, saved (an existing name is refused)."""
    if path_of(store, name).is_file():  # before running the query
        raise _conflict(name, 1, 0)
    if query.kind == "item":  # the item's full id, as the results show it
        query.item = resolve_ids(store, query.model, [query.item])[0]
    result = run_query(store, query, encoder=encoder)
    c = Collection(name=name, query=query, items=[CollectionItem(str(i)) for i in result.table["id"]])
    return save(store, c, expected_version=0, by=by)


def refresh(store, collection: Collection, encoder=None) -> Refreshed:
    """Run the collection's query again over the store's current items: every item still in the store
    stays where it is (pinned or not), items the store no longer holds leave (``gone``), removed ones
    stay out, and new matches are appended (``new``). Not saved: see :func:`save`."""
    c = collection
    result = run_query(store, c.query, k=c.query.k + len(c.removed), encoder=encoder)
    table = _catalog(store, c.query.model)
    live = set(table["id"].astype(str))
    gone = [i.id for i in c.items if i.id not in live]
    kept = [i for i in c.items if i.id in live]
    have, removed = {i.id for i in kept}, set(c.removed)
    matches = [str(i) for i in result.table["id"] if str(i) not in removed][:c.query.k]
    new = [i for i in matches if i not in have]
    room = MAX_ITEMS - len(kept)
    notes = list(result.notes)
    if len(new) > room:
        notes.append(f"the collection holds at most {MAX_ITEMS} items; {len(new) - room} new matches were left out")
        new = new[:max(room, 0)]
    c.items = kept + [CollectionItem(i) for i in new]
    if gone:
        notes.append(f"{len(gone)} item{'s' if len(gone) != 1 else ''} left the store and the collection: "
                     + ", ".join(gone[:5]) + (" ..." if len(gone) > 5 else ""))
    return Refreshed(c, new, gone, notes)


def refresh_saved(store, name: str, by: str | None = None, encoder=None) -> Refreshed:
    """Load, refresh and save the collection ``name`` (a conflict if someone saved it meanwhile)."""
    r = refresh(store, load(store, name), encoder=encoder)
    save(store, r.collection, by=by)
    return r


# --- editing ---------------------------------------------------------------------------------------

def _find(c: Collection, item_id: str) -> CollectionItem:
    for i in c.items:
        if i.id == item_id:
            return i
    tail = [i for i in c.items if i.id.endswith("/" + str(item_id))]
    if len(tail) == 1:
        return tail[0]
    raise QueryError(f"{item_id!r} is not in the collection {c.name!r}.{suggest(str(item_id), c.ids)}")


def pin(c: Collection, item_id: str) -> Collection:
    _find(c, item_id).pinned = True
    return c


def unpin(c: Collection, item_id: str) -> Collection:
    _find(c, item_id).pinned = False
    return c


def annotate(c: Collection, item_id: str, note: str) -> Collection:
    _find(c, item_id).note = _check_note(note)
    return c


def remove(c: Collection, item_id: str) -> Collection:
    """Take the item out; a refresh will not bring it back (unless it is added again)."""
    it = _find(c, item_id)
    c.items.remove(it)
    if it.id not in c.removed:
        c.removed.append(it.id)
    return c


def move(c: Collection, item_id: str, position: int) -> Collection:
    """Put the item at ``position`` (1 = first)."""
    check_number("position", position, min=1, max=max(len(c.items), 1), integer=True)
    it = _find(c, item_id)
    c.items.remove(it)
    c.items.insert(int(position) - 1, it)
    return c


def reorder(c: Collection, order: Sequence[str]) -> Collection:
    """Items in the order given: every id of the collection, once."""
    if sorted(order) != sorted(c.ids):
        missing = [i for i in c.ids if i not in order]
        extra = [i for i in order if i not in c.ids]
        raise QueryError(f"A new order lists every item of {c.name!r} once ("
                         + "; ".join(x for x in (f"missing: {', '.join(missing[:5])}" if missing else "",
                                                  f"not in it: {', '.join(extra[:5])}" if extra else "",
                                                  "an id twice" if not missing and not extra else "") if x) + ").")
    by_id = {i.id: i for i in c.items}
    c.items = [by_id[i] for i in order]
    return c


def add(store, c: Collection, ids: Sequence[str], position: int | None = None) -> Collection:
    """Add catalog items (at ``position``, 1 = first; default: the end); one that was removed comes back."""
    full = resolve_ids(store, c.query.model, ids)
    new = [i for i in dict.fromkeys(full) if i not in set(c.ids)]
    if len(c.items) + len(new) > MAX_ITEMS:
        raise QueryError(f"A collection holds at most {MAX_ITEMS} items; remove some first.")
    c.removed = [r for r in c.removed if r not in set(full)]
    if position is not None:
        check_number("position", position, min=1, max=len(c.items) + 1, integer=True)
    at = len(c.items) if position is None else int(position) - 1
    c.items[at:at] = [CollectionItem(i) for i in new]
    return c


def _check_note(note) -> str:
    if not isinstance(note, str):
        raise QueryError("A note is a text.")
    if len(note) > MAX_NOTE:
        raise QueryError(f"A note is {len(note):,} characters long; keep it to {MAX_NOTE:,}.")
    return note


def check_items(c: Collection) -> None:
    """An edited collection's items: each id once, at most MAX_ITEMS, notes within their length."""
    ids = c.ids
    if len(ids) > MAX_ITEMS:
        raise QueryError(f"A collection holds at most {MAX_ITEMS} items (got {len(ids)}).")
    twice = [i for i in dict.fromkeys(ids) if ids.count(i) > 1]
    if twice:
        raise QueryError(f"{twice[0]!r} is in the collection twice; keep each item once.")
    for i in c.items:
        if not isinstance(i.id, str) or not i.id:
            raise QueryError("Each item of a collection needs an id.")
        _check_note(i.note)


def update(store, name: str, items: Sequence[dict], removed: Sequence[str] | None, expected_version: int,
           by: str | None = None) -> Collection:
    """Save an edited collection as a whole (the web page's edits): its items (``id``, ``pinned``,
    ``note``), in order, and its removed ids, if the saved one is still at ``expected_version``. Item ids
    must be in the store; an item already in the collection keeps its ``added`` time."""
    c = load(store, name)
    if c.version != int(expected_version):  # before checking ids: the conflict is what to say first
        raise _conflict(name, c.version, int(expected_version))
    before = {i.id: i for i in c.items}
    full = resolve_ids(store, c.query.model, [str(i.get("id", "")) for i in items])
    c.items = [CollectionItem(f, pinned=bool(i.get("pinned", False)), note=_check_note(i.get("note") or ""),
                              added=before[f].added if f in before else now())
               for f, i in zip(full, items)]
    if removed is not None:
        c.removed = list(dict.fromkeys(str(r) for r in removed if str(r) not in set(full)))
    return save(store, c, expected_version=expected_version, by=by)


# --- export ---------------------------------------------------------------------------------------

EXPORT_TYPES = {".html": "html", ".htm": "html", ".csv": "csv", ".json": "json"}


def export_format(path_or_format: str) -> str:
    s = str(path_or_format).lower()
    if s in ("html", "csv", "json"):
        return s
    fmt = EXPORT_TYPES.get(Path(s).suffix)
    if fmt is None:
        raise QueryError(f"Cannot export a collection as {Path(s).suffix or s!r}; name the file .html, .csv "
                         "or .json.")
    return fmt


def export_table(store, c: Collection):
    """The collection as a table for a CMS or a page: rank, id, title, pinned, note, added, and the
    item's photo ``path`` (items the store no longer holds keep their row, without title or photo)."""
    import pandas as pd

    table = _catalog(store, c.query.model)
    at = dict(zip(table["id"].astype(str), range(len(table))))
    title_col = next((t for t in ("title", "productDisplayName", "name") if t in table.columns), None)
    rows = []
    for rank, it in enumerate(c.items, 1):
        pos = at.get(it.id)
        title = table[title_col].iloc[pos] if pos is not None and title_col else None
        title = None if title is None or title != title else str(title)
        rows.append({"rank": rank, "id": it.id, "title": title, "pinned": bool(it.pinned), "note": it.note,
                     "added": it.added, "path": str(table["path"].iloc[pos]) if pos is not None else ""})
    return pd.DataFrame(rows, columns=["rank", "id", "title", "pinned", "note", "added", "path"])


def catalog_root(store) -> Path:
    return Path(str(as_store(store).info().get("root", "")))
