"""The keyword index: the catalog's text columns in SQLite FTS5, for keyword and hybrid search.

One document per metadata row (a product in a feed, a photo in a folder with metadata; a store
without metadata indexes its items' ids), in ``STORE/keywords.sqlite``:

- ``fts`` (FTS5, ``unicode61 remove_diacritics 2``: case and accents folded, so "mjolk" finds
  "mjölk"; prefix indexes of 2 and 3 characters for ``word*`` queries): one column per indexed
  text column, ranked by BM25 with the id, title and brand columns weighted double;
- ``docs``: each document's id and a digest of its text, so that ``update_keywords`` rewrites only
  the products added, changed or removed since (what ``vrec embed`` calls after each run);
- ``codes``: each document's identifiers (id, SKU, GTIN, MPN...), normalised, for exact matches
  that rank first.

The text columns are every text column of the metadata except links and paths, or the ones
named with ``--text-columns``. SQLite's FTS5 is part of Python's own sqlite3 (nothing to install);
it updates in place and answers in milliseconds at a million products.
"""
from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import unicodedata
from contextlib import closing

from vrec.base.errors import QueryError, StoreError, suggest
from vrec.base.files import atomic_path

FILE = "keywords.sqlite"
VERSION = 2  # 2: the vocabulary table (document frequencies)
TOKENIZER = "unicode61 remove_diacritics 2"
# columns never indexed by default: locations of files, not words a shopper types
SKIP_COLUMNS = re.compile(r"(link|url|path|image|photo|thumbnail)", re.I)
# identifier columns: an exact match of the whole query ranks first
CODE_COLUMNS = re.compile(r"^(id|sku|gtin\d*|ean\d*|upc|mpn|isbn|barcode|item_?id|product_?id|variant[ _]?(sku|barcode))$",
                          re.I)
HEAVY_COLUMNS = re.compile(r"^(id|title|name|brand|vendor|productdisplayname|sku|gtin\d*|mpn)$", re.I)
# English function words (from the common stop lists): dropped from keyword queries, since nearly
# every description holds them; a query of nothing else has no keyword to look for.
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves photo
""".split())
TERM = re.compile(r"[^\W_]+(\*?)")  # unicode61's tokens: runs of letters and digits; a trailing * = prefix


def keywords_path(st):
    return st.path / FILE


def has_keywords(st) -> bool:
    return keywords_path(st).is_file()


def normal_code(value) -> str:
    """An identifier as compared: lower case, without spaces, dashes and dots (GTIN '0 1234-5' = '012345')."""
    return re.sub(r"[\s\-.]", "", str(value)).lower()


def _folded(word: str) -> str:
    """A word as the unicode61 tokenizer indexes it: lower case, accents removed."""
    return "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))


def text_columns(meta, wanted=None) -> list[str]:
    """The metadata columns to index: ``wanted`` (checked), else every text column that is not a link."""
    cols = [str(c) for c in meta.columns]
    if wanted:
        wanted = [w.strip() for w in wanted if w.strip()]
        for w in wanted:
            if w != "id" and w not in cols:
                raise QueryError(f"No metadata column {w!r} for --text-columns.{suggest(w, cols)} "
                                 f"The metadata has: {', '.join(cols) or 'no columns'}.")
        return [w for w in dict.fromkeys(wanted) if w != "id"]
    return [c for c in cols if not SKIP_COLUMNS.search(c) and _is_text(meta[c])]


def _is_text(series) -> bool:
    import pandas as pd

    return pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)


def _documents(st, columns: list[str], meta=None):
    """(ids, [[text per column]], [codes]) of every document: the metadata rows, else the items' ids."""
    meta = st.metadata() if meta is None else meta
    if len(meta) or len(meta.columns):
        ids = meta.index.astype(str).tolist()
        values = [meta[c].astype("string").fillna("").astype(str).tolist() for c in columns]
        texts = [list(row) for row in zip(*values)] if values else [[] for _ in ids]
        code_cols = [c for c in meta.columns if CODE_COLUMNS.match(str(c))]
        codes = [[normal_code(i)] for i in ids]
        for c in code_cols:
            for doc, v in zip(codes, meta[c].astype("string").fillna("").astype(str).tolist()):
                if v.strip():
                    doc.append(normal_code(v))
        return ids, texts, codes
    ids: dict[str, None] = {}
    for name in st.model_names():
        ids.update(dict.fromkeys(st.model(name).items()["id"].astype(str).tolist()))
    return list(ids), [[] for _ in ids], [[normal_code(i)] for i in ids]


def _digest(doc_id: str, text: list[str], codes: list[str]) -> str:
    return hashlib.blake2b(json.dumps([doc_id, text, codes]).encode(), digest_size=12).hexdigest()


def _connect(path) -> sqlite3.Connection:
    # the default rollback journal, not WAL: a rebuild replaces the file by renaming a new one over
    # it, and a WAL file left beside it would belong to the old one
    return sqlite3.connect(str(path))


def _schema(con: sqlite3.Connection, columns: list[str], chosen: bool) -> None:
    fts_cols = ", ".join(["doc_id", *(f"c{i}" for i in range(len(columns)))])
    con.executescript(f"""
        CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE docs (rowid INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, digest TEXT NOT NULL);
        CREATE TABLE codes (code TEXT NOT NULL, doc INTEGER NOT NULL);
        CREATE INDEX codes_code ON codes(code);
        CREATE INDEX codes_doc ON codes(doc);
        CREATE VIRTUAL TABLE fts USING fts5({fts_cols}, tokenize="{TOKENIZER}", prefix='2 3');
        CREATE VIRTUAL TABLE vocab USING fts5vocab(fts, 'row');
    """)
    con.executemany("INSERT INTO info VALUES (?, ?)", [("version", str(VERSION)), ("columns", json.dumps(columns)),
                                                       ("chosen", "1" if chosen else "0")])


def build_keywords(st, columns=None) -> dict:
    """Build the keyword index from scratch (``vrec index``); returns its stats. ``columns`` None: the
    columns named for the index there before, if they were named; ``["auto"]``: every text column."""
    if columns is None:
        columns = _named_before(st)
    elif [c.strip() for c in columns] == ["auto"]:
        columns = None
    meta = st.metadata()
    cols = text_columns(meta, columns)
    path = keywords_path(st)
    with atomic_path(path) as tmp, closing(sqlite3.connect(tmp)) as con:
        _schema(con, cols, bool(columns))
        ids, texts, codes = _documents(st, cols, meta)
        _insert(con, ids, texts, codes)
        con.execute("INSERT INTO fts(fts) VALUES ('optimize')")
        con.commit()
    return keyword_stats(st)


def _insert(con, ids, texts, codes) -> None:
    start = (con.execute("SELECT max(rowid) FROM docs").fetchone()[0] or 0) + 1
    rowids = range(start, start + len(ids))
    con.executemany("INSERT INTO docs VALUES (?, ?, ?)",
                    [(r, i, _digest(i, t, c)) for r, i, t, c in zip(rowids, ids, texts, codes)])
    if not ids:
        return
    holes = ", ".join("?" * (2 + len(texts[0])))  # rowid, doc_id, one per text column
    con.executemany(f"INSERT INTO fts(rowid, doc_id{''.join(f', c{n}' for n in range(len(texts[0])))}) "
                    f"VALUES ({holes})", [(r, i, *t) for r, i, t in zip(rowids, ids, texts)])
    con.executemany("INSERT INTO codes VALUES (?, ?)", [(c, r) for r, cs in zip(rowids, codes) for c in set(cs)])


def _delete(con, rowids: list[int]) -> None:
    con.executemany("DELETE FROM fts WHERE rowid = ?", [(r,) for r in rowids])
    con.executemany("DELETE FROM codes WHERE doc = ?", [(r,) for r in rowids])
    con.executemany("DELETE FROM docs WHERE rowid = ?", [(r,) for r in rowids])


def indexed_columns(st) -> list[str]:
    with closing(_open(st)) as con:
        return json.loads(con.execute("SELECT value FROM info WHERE key = 'columns'").fetchone()[0])


def update_keywords(st) -> dict | None:
    """Bring an existing keyword index in step with the metadata: the products added, changed or
    removed since are rewritten, the rest left alone (``vrec embed``'s last step). None when the
    store has no keyword index."""
    if not has_keywords(st):
        return None
    try:
        cols = indexed_columns(st)
    except (StoreError, sqlite3.DatabaseError):  # another version's index, or a damaged file: built anew
        return build_keywords(st)
    meta = st.metadata()
    if any(c not in set(map(str, meta.columns)) for c in cols):  # an indexed column left: index what is there
        return build_keywords(st)
    if not _chosen(st) and text_columns(meta) != cols:  # the default columns changed (a new or filled-in column)
        return build_keywords(st)
    ids, texts, codes = _documents(st, cols, meta)
    with closing(_open(st)) as con:
        old = dict(con.execute("SELECT id, digest FROM docs"))
        rowid_of = dict(con.execute("SELECT id, rowid FROM docs"))
        new = {i: _digest(i, t, c) for i, t, c in zip(ids, texts, codes)}
        gone = [i for i in old if new.get(i) != old[i]]
        fresh = [n for n, i in enumerate(ids) if old.get(i) != new[i]]
        _delete(con, [rowid_of[i] for i in gone])
        _insert(con, [ids[n] for n in fresh], [texts[n] for n in fresh], [codes[n] for n in fresh])
        con.commit()
    return {"added": sum(ids[n] not in old for n in fresh), "changed": sum(ids[n] in old for n in fresh),
            "removed": sum(i not in new for i in old)}


def _named_before(st) -> list[str] | None:
    """The columns named with --text-columns for the index in the store (None: none named, or no index)."""
    try:
        return keyword_stats(st)["columns"] if has_keywords(st) and _chosen(st) else None
    except (StoreError, sqlite3.Error):  # a damaged index or another version's: rebuilt with the default
        return None


def _chosen(st) -> bool:
    """Whether the index's columns were named (``--text-columns``), rather than every text column."""
    with closing(_open(st)) as con:
        row = con.execute("SELECT value FROM info WHERE key = 'chosen'").fetchone()
    return row is None or row[0] == "1"  # an index from before this key: keep its columns


def _open(st) -> sqlite3.Connection:
    path = keywords_path(st)
    if not path.is_file():
        raise StoreError(f"The store {str(st.path)!r} has no keyword index; run 'vrec index' to build it.")
    con = _connect(path)
    try:
        version = con.execute("SELECT value FROM info WHERE key = 'version'").fetchone()
    except sqlite3.DatabaseError as e:  # not a database, truncated, or not vrec's
        con.close()
        raise damaged(path, e) from None
    if version is None or int(version[0]) != VERSION:
        con.close()
        raise StoreError(f"{str(path)!r} was written by another vrec version; run 'vrec index' to rebuild it.")
    return con


def damaged(path, error: Exception) -> StoreError:
    return StoreError(f"The keyword index {str(path)!r} is damaged ({error}); run 'vrec index' to rebuild it.")


def keyword_stats(st) -> dict:
    with closing(_open(st)) as con:
        docs = con.execute("SELECT count(*) FROM docs").fetchone()[0]
        cols = json.loads(con.execute("SELECT value FROM info WHERE key = 'columns'").fetchone()[0])
    return {"documents": int(docs), "columns": cols, "size_bytes": keywords_path(st).stat().st_size}


# --- queries ------------------------------------------------------------------------------------

def query_terms(text: str) -> list[str]:
    """The query's keywords as FTS5 terms: each word quoted (so FTS5's syntax -- quotes, AND, NEAR,
    parentheses, column filters -- is read as plain words), a trailing * kept as a prefix query,
    stop words left out. Empty when nothing is left."""
    terms = []
    for m in TERM.finditer(text or ""):
        word = m.group(0).rstrip("*")
        if word.lower() in STOP_WORDS:
            continue
        terms.append(f'"{word}"' + ("*" if m.group(1) else ""))
    return list(dict.fromkeys(terms))


class KeywordIndex:
    """An open keyword index, for many queries in a row (``vrec eval``); use as a context manager."""

    def __init__(self, st):
        self.con = _open(st)
        self.path = keywords_path(st)
        cols = json.loads(self.con.execute("SELECT value FROM info WHERE key = 'columns'").fetchone()[0])
        self.columns: list[str] = cols
        self.weights = ", ".join(["2.0"] + ["2.0" if HEAVY_COLUMNS.match(c) else "1.0" for c in cols])
        self.documents = None

    def __enter__(self) -> KeywordIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.con.close()

    def _informative(self, terms: list[str]) -> list[str]:
        """The terms without those in more than half the documents (a word every product has, such as
        "SKU" in SKU-0042, ranks nothing and makes BM25 score every product), unless none would be left."""
        if len(terms) < 2:
            return terms
        if self.documents is None:
            self.documents = self.con.execute("SELECT count(*) FROM docs").fetchone()[0]
        common = set()
        for t in terms:
            if not t.endswith("*"):
                row = self.con.execute("SELECT doc FROM vocab WHERE term = ?", (_folded(t.strip('"')),)).fetchone()
                if row and row[0] > self.documents / 2:
                    common.add(t)
        kept = [t for t in terms if t not in common]
        return kept or terms

    def search(self, text: str, limit: int) -> tuple[list[str], list[float], set[str]]:
        """``_search``, with a damaged file (pages beyond the header) one clear error."""
        try:
            return self._search(text, limit)
        except sqlite3.DatabaseError as e:
            raise damaged(self.path, e) from None

    def _search(self, text: str, limit: int) -> tuple[list[str], list[float], set[str]]:
        """The ``limit`` best documents for a text: (ids best first, BM25 scores (higher is better),
        the ids whose identifier equals the whole query). A document needs any one keyword (OR),
        ranked by BM25, so those holding more and rarer keywords come first; exact identifiers are
        always among the ids. Raises QueryError for a text with no keyword (empty, only stop words
        or punctuation) that is no identifier either."""
        terms = self._informative(query_terms(text))
        exact = {r[0] for r in self.con.execute(
            "SELECT d.id FROM codes c JOIN docs d ON d.rowid = c.doc WHERE c.code = ?", (normal_code(text.strip()),))}
        if not terms:
            if exact:
                return sorted(exact), [0.0] * len(exact), exact
            raise QueryError(f"The query {text!r} has no keyword to look for (only stop words or punctuation); "
                             "give a word from the products' titles, brands or descriptions.")
        rows = self.con.execute(f"SELECT doc_id, -bm25(fts, {self.weights}) FROM fts WHERE fts MATCH ? "
                                f"ORDER BY bm25(fts, {self.weights}) LIMIT ?",
                                (" OR ".join(terms), int(limit))).fetchall()
        ids = [r[0] for r in rows]
        scores = [float(r[1]) for r in rows]
        missing = [e for e in sorted(exact) if e not in ids]
        return ids + missing, scores + [max(scores, default=0.0)] * len(missing), exact


def search_keywords(st, text: str, limit: int) -> tuple[list[str], list[float], set[str]]:
    """One query of the store's keyword index (see ``KeywordIndex.search``)."""
    with KeywordIndex(st) as ix:
        return ix.search(text, limit)
