"""Product feeds: a merchandiser's catalog as a file of products and their photo locations.

Pure parsing -- nothing is downloaded or embedded here. A feed is CSV (',', ';', tab or '|'
separated, as :func:`vrec.ingest.metadata.parse_csv` detects), Parquet or JSON Lines, each
optionally gzip-compressed (``.gz``, decompressed under the same size cap as the file itself).
It is read through the one opener of user files (kind "feed").

Three layouts:

- ``google`` (Google Merchant Center, a header with ``image_link``): one row per product; the
  id is ``id``; the photos are ``image_link`` then each of ``additional_image_link``
  (comma-separated, or a list in JSON Lines and Parquet); ``item_group_id`` (variants of one
  product line) stays a metadata column.
- ``shopify`` (a Shopify product export, a header with ``Handle`` and ``Image Src``): several
  rows per product, grouped by ``Handle`` (the id); photos ordered by ``Image Position`` (rows
  without one keep file order after the numbered ones), then any ``Variant Image`` not yet
  listed. Each field is taken from the first row of the product that has it, except
  ``Variant SKU`` (all of them, comma-separated, as ``skus``) and ``OptionN Value`` (all values,
  comma-separated). So that both layouts expose the same names, ``Title``, ``Type``,
  ``Body (HTML)`` (its HTML stripped to text) and ``Variant Price`` become ``title``,
  ``product_type``, ``description`` and ``price``; ``Vendor`` stays and is copied as ``brand``.
  ``Image Position`` and ``Image Alt Text`` describe photos and are not kept.
- ``custom``: any other header, with the options ``id_column`` and ``image_columns`` (each cell
  one location or a comma-separated list); ``group_column`` is kept as is; ``title_column`` is
  renamed ``title``. The options also override the defaults of a detected layout.

Every column but the id and the image columns is kept in ``Feed.products``, named as in the
file (bar the aliases above). A ``price``/``sale_price`` such as "29.99 USD" becomes a number,
its currency going to a ``currency`` column. Photo locations are kept as written: a relative
path (the caller resolves it against the feed's folder), an absolute path or an http(s) URL.
Every problem is one CatalogError naming the file, and the row (header = row 1) or the line of
a JSON Lines file where it is.
"""
from __future__ import annotations

import gzip
import io
import json
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

from vrec.base.errors import CatalogError, suggest
from vrec.base.userfiles import LIMIT_ENV, MB, limit_mb, read_bytes
from vrec.ingest.metadata import check_width, parse_csv, parse_parquet, separator

if TYPE_CHECKING:
    import pandas

FEED_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".ndjson")  # each also with ".gz"
FEED_WANT = "give a product feed (CSV, TSV, Parquet or JSON Lines, optionally .gz)"
WHAT = "Feed"
KIND = "feed"

GOOGLE_IMAGES = ("image_link", "additional_image_link")
GOOGLE_GROUP = "item_group_id"
SHOPIFY_ID, SHOPIFY_IMAGE, SHOPIFY_POSITION = "Handle", "Image Src", "Image Position"
SHOPIFY_VARIANT_IMAGE, SHOPIFY_SKU = "Variant Image", "Variant SKU"
SHOPIFY_DROPPED = (SHOPIFY_POSITION, "Image Alt Text")
SHOPIFY_ALIASES = {"Title": "title", "Type": "product_type", "Body (HTML)": "description", "Variant Price": "price"}
SHOPIFY_OPTION = re.compile(r"Option\d+ Value")
CUSTOM_IMAGES = ("image_url", "image", "image_path", "photo", "file", "filename", "path")
FORMATS = {"google": "a Google Merchant feed", "shopify": "a Shopify product export", "custom": "a custom feed"}
PRICE_COLUMNS = ("price", "sale_price")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass
class FeedPhoto:
    product: str      # product id
    position: int     # 1-based order of the photo within its product (the main image first)
    location: str     # as written in the feed: a relative path, an absolute path, or an http(s) URL


@dataclass
class Feed:
    format: str                  # "google", "shopify" or "custom"
    photos: list[FeedPhoto]      # in feed order, product by product
    products: pandas.DataFrame   # one row per product, index named "id" (the product id), metadata columns
    without_photos: list[str]    # product ids that have no photo (listed to the user, not an error)
    notes: list[str]             # one sentence each, for the user
    group_column: str | None = None  # the column that groups variants of one product line, if any


@dataclass
class _Layout:
    id: str
    listed: list[str]            # image columns, in the order their photos come
    extra: list[str]             # image columns whose photos are added when not yet listed (Variant Image)
    group: str | None
    title: str | None
    multirow: bool               # several rows per product (Shopify)


@dataclass
class _Table:
    frame: object                # the typed DataFrame
    raw: object | None           # the same as text (CSV only), for ids and locations as written
    rows: list[str]              # where each row is, for errors: 'row 5' or 'line 5'
    notes: list[str] = field(default_factory=list)

    def text(self, column: str) -> list[str]:
        cells = self.raw[column] if self.raw is not None else self.frame[column]
        return [_text(v) for v in cells]

    def cells(self, column: str) -> list:
        return list(self.raw[column] if self.raw is not None else self.frame[column])


# --- what is a feed ---------------------------------------------------------------------------

def is_feed_file(path) -> bool:
    """Whether the file name ends as a feed does (see FEED_SUFFIXES, each also with '.gz')."""
    name = Path(path).name.lower().removesuffix(".gz")
    return name.endswith(FEED_SUFFIXES)


def looks_like_feed(columns: Iterable) -> str | None:
    """'google' for a header with image_link, 'shopify' for one with Handle and Image Src, else None."""
    names = {str(c) for c in columns}
    if "image_link" in names:
        return "google"
    if {SHOPIFY_ID, SHOPIFY_IMAGE} <= names:
        return "shopify"
    return None


# --- reading ----------------------------------------------------------------------------------

def read_feed(path, id_column: str | None = None, image_columns: Sequence[str] = (), group_column: str | None = None,
              title_column: str | None = None) -> Feed:
    """Read a product feed: its products (metadata) and their photo locations; see the module's doc."""
    table = _read_table(path)
    columns = [str(c) for c in table.frame.columns]
    fmt = looks_like_feed(columns) or "custom"
    layout = _layout(path, fmt, columns, id_column, list(image_columns), group_column, title_column)
    notes = table.notes
    ids, keep = _ids(path, table, layout)
    photos, without, repeats = _photos(table, layout, ids, keep)
    products = _products(table, layout, ids, keep)
    products = _aliases(products, fmt, layout, notes)
    _prices(products, path, notes)
    lacking = f", {_count(len(without), 'product')} without a photo" if without else ""
    notes.insert(0, f"{WHAT} {str(path)!r} was read as {FORMATS[fmt]}: {len(products):,} products, {len(photos):,} "
                    f"photos{lacking}.")
    if repeats:
        notes.append(f"{repeats:,} photo location{'s' if repeats > 1 else ''} listed twice for the same product in "
                     f"feed {str(path)!r} {'were' if repeats > 1 else 'was'} kept once.")
    return Feed(fmt, photos, products, without, notes, layout.group)


def _read_table(path) -> _Table:
    """The feed's rows, typed, with where each row is; blank rows dropped."""
    name = Path(path).name.lower()
    if not is_feed_file(path):
        raise CatalogError(f"{WHAT} {str(path)!r} is not a feed file by its name; {FEED_WANT}, named "
                           f"{', '.join(FEED_SUFFIXES)} (or the same with .gz).")
    data = read_bytes(path, WHAT, KIND, FEED_WANT, CatalogError)
    if name.endswith(".gz"):
        data = _gunzip(data, path)
        name = name[:-3]
    if name.endswith(".parquet"):
        table = _parquet(data, path)
    elif name.endswith((".jsonl", ".ndjson")):
        table = _jsonl(data, path)
    else:
        table = _csv(data, path)
    if not len(table.frame):
        raise CatalogError(f"{WHAT} {str(path)!r} has no products; it needs a header row and one row per product.")
    return table


def _gunzip(data: bytes, path) -> bytes:
    """gzip-compressed bytes, decompressed to at most the feed size cap (a gzip bomb is refused)."""
    cap = limit_mb(KIND)
    limit = int(cap * MB)
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise CatalogError(f"{WHAT} {str(path)!r} is not a valid gzip file ({e}); give the feed itself, or "
                           "compress it again with gzip.") from None
    if len(out) > limit:
        raise CatalogError(f"{WHAT} {str(path)!r} decompresses to more than the {cap:g} MB a feed may hold; give a "
                           f"smaller feed, or raise the limit with {LIMIT_ENV}.")
    return out


def _csv(data: bytes, path) -> _Table:
    """CSV or TSV: read twice, typed (for metadata) and as text (ids and locations as written)."""
    import warnings

    import pandas as pd

    notes: list[str] = []
    options = {"index_col": False, "skip_blank_lines": False}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # rows one field too long: data lost
            raw = parse_csv(data, path, WHAT, notes, dtype=str, keep_default_na=False, **options)
            frame = parse_csv(data, path, WHAT, [], **options)
    except (CatalogError, pd.errors.ParserWarning) as e:
        _refuse_bad_row(data, path)
        if isinstance(e, CatalogError):
            raise
        raise CatalogError(f"Cannot read {WHAT.lower()} {str(path)!r} as CSV ({e}).") from None
    _refuse_swallowed_rows(raw, separator(data), path)
    blank = (raw.apply(lambda c: c.str.strip()) == "").all(axis=1)
    if Path(str(path).lower().removesuffix(".gz")).suffix in (".tsv", ".txt"):
        notes = [n for n in notes if "separated by tabs" not in n]  # as the name says: nothing to tell
    rows = [f"row {i + 2}" for i in range(len(raw))]
    keep = ~blank.to_numpy()
    rows = [r for r, k in zip(rows, keep) if k]
    raw, frame = raw[keep].reset_index(drop=True), frame[keep].reset_index(drop=True)
    return _Table(frame, raw, rows, notes)


def _refuse_swallowed_rows(raw, sep: str, path) -> None:
    """Refuse a quote left open: a cell that runs over line breaks into lines shaped like rows of the
    feed (as many separators as the header, nearly) swallowed the rows after it. A description of
    several lines is fine."""
    width = len(raw.columns)
    if width < 3:
        return
    for column in raw.columns:
        cells = raw[column]
        for i in cells.index[cells.str.contains("\n", regex=False)]:
            lines = cells[i].split("\n")[1:]
            swallowed = [line for line in lines if line.count(sep) >= width - 2]
            if swallowed:
                raise CatalogError(
                    f"Row {i + 2} of {WHAT.lower()} {str(path)!r}: the value of {column!r} runs over the next "
                    f"line{'s' if len(lines) > 1 else ''}, which look{'' if len(lines) > 1 else 's'} like a row of its "
                    f"own ({swallowed[0][:60]!r}); a quote is probably not closed in that row: close it and read "
                    "the feed again.")


def _refuse_bad_row(data: bytes, path) -> None:
    """Raise a CatalogError naming the first row with more fields than the header, if any."""
    import csv

    text = data.decode("utf-8-sig", errors="replace")
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator(data))
        width = len(next(reader, []))
        for number, fields in enumerate(reader, start=2):
            if len(fields) > width:
                raise CatalogError(
                    f"Row {number} of {WHAT.lower()} {str(path)!r} has {len(fields)} fields where the header has "
                    f"{width}; quote the values that hold the separator (or fix that row) and read it again.")
    except csv.Error:
        return


def _jsonl(data: bytes, path) -> _Table:
    """JSON Lines: one JSON object per line; blank lines skipped."""
    import pandas as pd

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CatalogError(f"{WHAT} {str(path)!r} is not UTF-8 text; save it as UTF-8.") from None
    records, rows = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise CatalogError(f"Line {number} of {WHAT.lower()} {str(path)!r} is not valid JSON ({e.msg}, column "
                               f"{e.colno}); write one JSON object per line.") from None
        if not isinstance(record, dict):
            raise CatalogError(f"Line {number} of {WHAT.lower()} {str(path)!r} is a JSON {type(record).__name__}, "
                               "not an object; write one JSON object per product per line.")
        records.append(record)
        rows.append(f"line {number}")
    frame = pd.DataFrame.from_records(records)
    check_width(path, WHAT, len(frame.columns))
    return _drop_blank(_Table(frame, None, rows))


def _parquet(data: bytes, path) -> _Table:
    frame = parse_parquet(data, path, WHAT).reset_index(drop=True)
    return _drop_blank(_Table(frame, None, [f"row {i + 1}" for i in range(len(frame))]))


def _drop_blank(table: _Table) -> _Table:
    """Rows with no value at all are left out (a JSON '{}', an empty parquet row)."""
    keep = [any(_text(v) for v in row) for row in table.frame.itertuples(index=False)]
    table.frame = table.frame[keep].reset_index(drop=True)
    table.rows = [r for r, k in zip(table.rows, keep) if k]
    return table


# --- layout -----------------------------------------------------------------------------------

def _layout(path, fmt: str, columns: list[str], id_column, image_columns: list[str], group_column,
            title_column) -> _Layout:
    """Which columns hold the id, the photos, the group and the title: the options, else the format's."""
    for option, names in (("--id-column", [id_column]), ("--image-column", image_columns),
                          ("--group-column", [group_column]), ("--title-column", [title_column])):
        for name in names:
            if name is not None and name not in columns:
                raise CatalogError(f"{WHAT} {str(path)!r} has no column {name!r} (given as {option});{suggest(name, columns)}"
                                   f" its columns are {_list(columns)}.")
    if fmt == "google":
        ident, listed, extra, group = "id", [c for c in GOOGLE_IMAGES if c in columns], [], GOOGLE_GROUP
    elif fmt == "shopify":
        ident, listed, group = SHOPIFY_ID, [SHOPIFY_IMAGE], None
        extra = [SHOPIFY_VARIANT_IMAGE] if SHOPIFY_VARIANT_IMAGE in columns else []
    else:
        ident = "id"
        listed = [next((c for c in columns if c.lower() in CUSTOM_IMAGES), None)]
        extra, group = [], None
    ident = id_column or ident
    if image_columns:
        listed, extra = list(image_columns), []
    listed = [c for c in listed if c is not None]
    if ident not in columns or not listed:
        missing = " and ".join(o for o, bad in (("--id-column", ident not in columns), ("--image-column", not listed))
                               if bad)
        raise CatalogError(f"{WHAT} {str(path)!r} does not say which column holds the product id and which the photo "
                           f"locations; name them with {missing} (its columns are {_list(columns)}).")
    group = group_column or (group if group in columns else None)
    return _Layout(ident, listed, extra, group, title_column, multirow=fmt == "shopify")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _list(columns: list[str], n: int = 12) -> str:
    return ", ".join(map(repr, columns[:n])) + (" ..." if len(columns) > n else "")


# --- ids and photos ---------------------------------------------------------------------------

def _ids(path, table: _Table, layout: _Layout) -> tuple[list[str], list[int]]:
    """The product id of each row, and the positions of the rows that start a product (all of them
    in a one-row-per-product feed, whose ids must then be unique)."""
    ids = [s.strip() for s in table.text(layout.id)]
    first: dict[str, int] = {}
    for i, pid in enumerate(ids):
        where = table.rows[i]
        if not pid:
            images = _locations(table.cells(layout.listed[0])[i])
            image = f" an image ({images[0]!r}) but" if images else ""
            raise CatalogError(f"{where.capitalize()} of {WHAT.lower()} {str(path)!r} has{image} no product id (column "
                               f"{layout.id!r}); give every row its product's id, or delete the row.")
        if CONTROL.search(pid):
            raise CatalogError(f"{where.capitalize()} of {WHAT.lower()} {str(path)!r} has a product id with a control "
                               f"character ({pid!r}); ids are printable text: fix that id.")
        if pid in first and not layout.multirow:
            hint = "variants of one product share a group column such as item_group_id, not the id"
            raise CatalogError(f"{WHAT} {str(path)!r} lists the product id {pid!r} twice ({table.rows[first[pid]]} and "
                               f"{where}); give each product its own id ({hint}).")
        first.setdefault(pid, i)
    return ids, list(first.values())


def _photos(table: _Table, layout: _Layout, ids: list[str], keep: list[int]):
    """The photos of every product in feed order, the products without any, and how many
    locations were listed twice for one product."""
    rows: dict[str, list[int]] = {ids[i]: [] for i in keep}
    for i, pid in enumerate(ids):
        rows[pid].append(i)
    cells = {c: table.cells(c) for c in layout.listed + layout.extra}
    if layout.multirow and SHOPIFY_POSITION in table.frame.columns and SHOPIFY_IMAGE in layout.listed:
        order = [_position(v) for v in table.cells(SHOPIFY_POSITION)]
        rows = {pid: sorted(rs, key=lambda i: order[i]) for pid, rs in rows.items()}
    photos, without, repeats = [], [], 0
    for pid, rs in rows.items():
        listed = [loc for i in rs for c in layout.listed for loc in _locations(cells[c][i])]
        extra = [loc for i in rs for c in layout.extra for loc in _locations(cells[c][i])]
        repeats += len(listed) - len(set(listed))
        seen = list(dict.fromkeys(listed + extra))  # a Variant Image already listed is no repeat
        photos += [FeedPhoto(pid, n, loc) for n, loc in enumerate(seen, start=1)]
        if not seen:
            without.append(pid)
    return photos, without, repeats


def _position(value) -> float:
    """A Shopify Image Position as a sort key: rows without one after the numbered ones."""
    try:
        number = float(_text(value))
    except ValueError:
        return math.inf
    return number if math.isfinite(number) else math.inf


def _locations(value) -> list[str]:
    """The photo locations in one cell: one, a comma-separated list, or a list (JSON or a real one)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return _locations(parsed)
        return [s.strip() for s in text.split(",") if s.strip()]
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist") and getattr(value, "ndim", 0) == 1:
        return [loc for v in list(value) for loc in _locations(v)]
    text = _text(value)
    return [text] if text else []


def _text(value) -> str:
    """A cell as text: '' for a missing one, '7' for 7.0."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str):
        return value
    try:
        import pandas as pd

        if pd.isna(value) is True:
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


# --- products ---------------------------------------------------------------------------------

def _products(table: _Table, layout: _Layout, ids: list[str], keep: list[int]):
    """One row per product, indexed by id: every column but the id and the image columns."""
    import numpy as np
    import pandas as pd

    frame = table.frame
    dropped = {layout.id, *layout.listed, *layout.extra}
    if layout.multirow:
        dropped |= set(SHOPIFY_DROPPED)
    meta = frame[[c for c in frame.columns if c not in dropped]].copy()
    for c in meta.columns:
        if pd.api.types.is_object_dtype(meta[c]) or pd.api.types.is_string_dtype(meta[c]):
            meta[c] = meta[c].map(_cell)
            meta[c] = meta[c].where(meta[c].map(lambda v: not (isinstance(v, str) and not v.strip())), np.nan)
    index = pd.Index(ids, name="id")
    if not layout.multirow:
        products = meta.iloc[keep].set_axis(pd.Index([ids[i] for i in keep], name="id"))
        return products
    joined = [c for c in meta.columns if c == SHOPIFY_SKU or SHOPIFY_OPTION.fullmatch(c)]
    meta = meta.set_axis(index)
    products = meta.groupby(level="id", sort=False).first()
    for c in joined:
        values = meta[c].groupby(level="id", sort=False).agg(_join)
        products[c] = values.reindex(products.index)
    if SHOPIFY_SKU in products.columns:
        products = products.rename(columns={SHOPIFY_SKU: "skus"})
    return products


def _cell(value):
    """A metadata cell that pandas can store: a list or a mapping (JSON Lines, parquet) as JSON text."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False)
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) >= 1:
        return json.dumps(value.tolist(), ensure_ascii=False, default=str)
    return value


def _join(values) -> object:
    """The distinct values of a column over a product's rows, comma-separated (NaN when none)."""
    texts = list(dict.fromkeys(t for t in (_text(v).strip() for v in values) if t))
    return ", ".join(texts) if texts else float("nan")


def _aliases(products, fmt: str, layout: _Layout, notes: list[str]):
    """The names both layouts share: Shopify's Title, Type, Body (HTML), Variant Price and Vendor;
    and the title_column as 'title'."""
    if fmt == "shopify":
        renames = {k: v for k, v in SHOPIFY_ALIASES.items() if k in products.columns and v not in products.columns}
        products = products.rename(columns=renames)
        if "description" in renames.values():
            products["description"] = products["description"].map(strip_html)
        if "Vendor" in products.columns and "brand" not in products.columns:
            products["brand"] = products["Vendor"]
    title = layout.title
    if title and title != "title" and title in products.columns:
        if "title" in products.columns:
            products = products.drop(columns=["title"])
            notes.append(f"The feed's own 'title' column was replaced by {title!r} (the title column asked for).")
        products = products.rename(columns={title: "title"})
    return products


# --- prices -----------------------------------------------------------------------------------

CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR"}
_PRICE = re.compile(r"(?P<code1>[A-Za-z]{3})?\s*(?P<sym1>[$€£¥₹])?\s*(?P<number>\d[\d.,'\s\u00a0\u202f]*)\s*"
                    r"(?P<sym2>[$€£¥₹])?\s*(?P<code2>[A-Za-z]{3})?")


def parse_price(text) -> tuple[float | None, str | None]:
    """A price as a number and an ISO currency code: '29.99 USD' -> (29.99, 'USD'); 'USD 29.99',
    '29,99 EUR', '$29.99', '1,299.00 SEK' and a plain number too; (None, None) for an empty or
    unreadable one. A comma followed by other than three digits is a decimal comma."""
    if text is None or isinstance(text, bool):
        return None, None
    if isinstance(text, (int, float)):
        value = float(text)
        return (value, None) if math.isfinite(value) and value >= 0 else (None, None)
    m = _PRICE.fullmatch(str(text).strip())
    if not m or (m["code1"] and m["code2"]) or (m["sym1"] and m["sym2"]):
        return None, None
    value = _number(m["number"])
    if value is None:
        return None, None
    code = (m["code1"] or m["code2"] or "").upper() or None
    symbol = CURRENCY_SYMBOLS.get(m["sym1"] or m["sym2"] or "")
    if code and symbol and code != symbol and not (symbol == "USD" and code in ("CAD", "AUD", "NZD", "SGD", "HKD", "MXN")):
        return None, None
    return value, code or symbol


def _number(text: str) -> float | None:
    """'1,299.00' / '1.299,00' / '1 299,00' / '29,99' / '29.99' as a float, else None."""
    text = re.sub(r"[\s\u00a0\u202f']", "", text)
    if "," in text and "." in text:
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
        text = text.replace("." if decimal == "," else ",", "").replace(",", ".")
    elif "," in text:
        parts = text.split(",")
        thousands = len(parts) > 2 or len(parts[1]) == 3
        text = text.replace(",", "") if thousands else text.replace(",", ".")
    elif text.count(".") > 1:
        text = text.replace(".", "")
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        return None
    return float(text)


def _prices(products, path, notes: list[str]) -> None:
    """price and sale_price as numbers (NaN where unreadable, with a note), their currency in 'currency'."""
    import numpy as np

    currency = None
    for column in PRICE_COLUMNS:
        if column not in products.columns:
            continue
        cells = products[column]
        parsed = [parse_price(v) for v in cells]
        given = [bool(_text(v).strip()) for v in cells]
        bad = [v for v, (number, _), g in zip(cells, parsed, given) if g and number is None]
        products[column] = np.array([np.nan if n is None else n for n, _ in parsed], dtype=float)
        codes = [c for _, c in parsed]
        if currency is None and any(codes):
            currency = codes
        elif currency is not None:
            currency = [a or b for a, b in zip(currency, codes)]
        if bad:
            notes.append(f"{len(bad):,} of the {sum(given):,} values in {column!r} of {WHAT.lower()} {str(path)!r} "
                         f"could not be read as a price (e.g. {_text(bad[0])!r}); they were left empty.")
        read = sum(given) - len(bad)
        if read:
            notes.append(f"{read:,} values in {column!r} were read as numbers"
                         f"{' (their currency in ' + repr('currency') + ')' if any(codes) else ''}, so filters such "
                         f"as {column}<30 work.")
    if currency is not None and "currency" not in products.columns:
        products["currency"] = [c if c else np.nan for c in currency]


# --- descriptions -----------------------------------------------------------------------------

class _TextOf(HTMLParser):
    """The text of an HTML fragment: tags dropped, entities decoded, block tags as spaces."""

    BLOCKS = {"p", "br", "div", "li", "ul", "ol", "tr", "td", "th", "table", "h1", "h2", "h3", "h4", "h5", "h6",
              "section", "article", "blockquote", "hr"}
    HIDDEN = {"script", "style"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs) -> None:
        self.hidden += tag in self.HIDDEN
        if tag in self.BLOCKS:
            self.parts.append(" ")

    def handle_endtag(self, tag) -> None:
        self.hidden -= tag in self.HIDDEN and self.hidden > 0
        if tag in self.BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data) -> None:
        if not self.hidden:
            self.parts.append(data)


def strip_html(text):
    """The text of an HTML description on one line ('<p>Fresh &amp; crisp</p>' -> 'Fresh & crisp');
    anything but a string is returned as it is."""
    if not isinstance(text, str):
        return text
    parser = _TextOf()
    parser.feed(text)
    parser.close()
    return " ".join("".join(parser.parts).split())

