"""Product metadata joined to the catalog's photos: a CSV (',', ';', tab or '|' separated) or parquet
file of product data, matched to item ids by an id or a file column, read through the one opener of
user files (regular files only, with a size cap)."""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from vrec.base.errors import CatalogError
from vrec.base.userfiles import read_bytes

# --- product metadata -------------------------------------------------------------------------

FILE_COLUMNS = ("file", "filename", "path", "image", "image_path")
METADATA_WANT = "give the CSV file of product data"
MAX_COLUMNS = 1000  # a metadata or list file with more columns is refused: vrec shows, filters and exports them all
SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def separator(data: bytes) -> str:
    """The separator a CSV's header line uses most: ',' unless ';', tab or '|' appear more often
    (spreadsheets save ';'-separated CSV in many locales)."""
    header = data[:65536].split(b"\n", 1)[0].decode("utf-8", errors="replace")
    counts = {sep: header.count(sep) for sep in SEPARATORS}
    best = max(counts, key=lambda sep: (counts[sep], sep == ","))
    return best if counts[best] else ","


def read_csv_file(path, what: str, kind: str, want: str, notes: list, **options):
    """A user's CSV file as a DataFrame, read through :mod:`vrec.userfiles` (regular files only,
    size capped by ``kind``); see :func:`parse_csv`."""
    return parse_csv(read_bytes(path, what, kind, want, CatalogError), path, what, notes, **options)


def parse_csv(data: bytes, path, what: str, notes: list, **options):
    """CSV bytes as a DataFrame, separated by ',' or, with a note, by the ';', tab or '|' their
    header uses, and at most MAX_COLUMNS columns wide. Every failure is one CatalogError naming
    the file (``what`` and ``path``)."""
    import pandas as pd

    sep = separator(data)
    try:
        header = pd.read_csv(io.BytesIO(data), sep=sep, nrows=0)
        check_width(path, what, len(header.columns))
        _check_unique(data, sep, path, what)
        df = pd.read_csv(io.BytesIO(data), sep=sep, **options)
    except pd.errors.EmptyDataError:
        raise CatalogError(f"{what} {str(path)!r} is empty; it needs a header row and one row per item.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CatalogError(f"Cannot read {what.lower()} {str(path)!r} as CSV ({reason}); save it as UTF-8 CSV.") from None
    if sep != ",":
        notes.append(f"{what} {str(path)!r} is separated by {SEPARATORS[sep]}, not commas; it was read that way.")
    return df


def _check_unique(data: bytes, sep: str, path, what: str) -> None:
    """Refuse a header that names a column twice (pandas would quietly rename the second 'col.1')."""
    import csv

    first = data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
    names = [n.strip() for n in next(csv.reader([first], delimiter=sep), [])]
    seen = {n for n in names if names.count(n) > 1 and n}
    if seen:
        raise CatalogError(f"{what} {str(path)!r} names the column {sorted(seen)[0]!r} twice; give each column "
                           f"its own name.")


def read_parquet_file(path, what: str, kind: str, want: str):
    """A user's parquet file as a DataFrame, read as :func:`read_csv_file` reads a CSV."""
    return parse_parquet(read_bytes(path, what, kind, want, CatalogError), path, what)


def parse_parquet(data: bytes, path, what: str):
    """Parquet bytes as a DataFrame, at most MAX_COLUMNS columns wide; a damaged file is one
    CatalogError naming it (``what`` and ``path``)."""
    import pandas as pd

    try:
        df = pd.read_parquet(io.BytesIO(data))
    except Exception as e:  # pyarrow raises its own kinds for a damaged file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CatalogError(f"Cannot read {what.lower()} {str(path)!r} as parquet ({reason}).") from None
    check_width(path, what, len(df.columns))
    return df


def check_width(path, what: str, columns: int) -> None:
    if columns > MAX_COLUMNS:
        raise CatalogError(f"{what} {str(path)!r} has {columns:,} columns, more than the {MAX_COLUMNS:,} vrec takes; "
                           "keep the columns you search, filter or export on (id, title, category, price, ...).")


def read_metadata(csv_path: str | os.PathLike, refs: Sequence) -> tuple[object, dict]:  # refs: ImageRefs
    """Read a product CSV and key it by item id.

    Rows are matched by an ``id`` column equal to the item id (``bags/tote-01``), its unique last
    part (``tote-01``, the file name without extension) or the file name, or by a file column
    (``file``, ``filename``, ``path``, ``image``) equal to the relative path or the file name;
    a backslash counts as a '/' (``bags\\tote-01.jpg``). Ids and file names are read exactly as
    written (an id ``NA`` or ``007`` stays that string). A file separated by ';', tabs or '|' is
    read as such, with a note. Returns the table indexed by ``id`` and a report of what matched
    (``notes`` among it), including ids that appear on more than one row (the last row wins,
    and the report says so). Raises CatalogError when no row matches any item -- a file with a
    header and no rows included: applying such a table would wipe the metadata the store has.
    """
    import pandas as pd

    notes: list[str] = []
    what, want = "Metadata file", METADATA_WANT
    data = read_bytes(csv_path, what, "metadata", want, CatalogError)
    df = parse_csv(data, csv_path, what, notes)
    raw = parse_csv(data, csv_path, what, [], dtype=str, keep_default_na=False)  # keys as written: 'NA', '007'
    del data
    ids = {r.id for r in refs}
    file_col = next((c for c in df.columns if str(c).lower() in FILE_COLUMNS), None)
    keys = _match_keys(raw, refs, file_col)
    if keys is None:
        raise CatalogError(
            f"Metadata file {str(csv_path)!r} needs an 'id' column (the file name without extension) "
            f"or a file column ({', '.join(FILE_COLUMNS)}); its columns are "
            f"{', '.join(map(repr, list(df.columns)[:8]))}{' ...' if len(df.columns) > 8 else ''}."
        )
    if not len(df):
        raise CatalogError(f"Metadata file {str(csv_path)!r} has a header but no rows, so it matches no image; "
                           "the store's metadata was left as it was. Add one row per product.")
    if keys.notna().sum() == 0 and ids:
        col = "id" if "id" in df.columns else file_col
        by_path = sorted(r.path for r in refs)
        raise CatalogError(
            f"None of the {len(df)} rows of {str(csv_path)!r} matches an image (its {col!r} values look like "
            f"{str(raw[col].iloc[0])!r}; item ids look like {sorted(ids)[0]!r}, file paths like "
            f"{by_path[0]!r}); the store's metadata was left as it was."
        )
    if file_col is not None and file_col != "id":
        df[file_col] = raw[file_col]
    df = pd.concat([keys.rename("id"), df.drop(columns=[c for c in ("id",) if c in df.columns])], axis=1)
    unmatched = int(df["id"].isna().sum())
    df = df.dropna(subset=["id"])
    dup = df["id"][df["id"].duplicated(keep="last")]
    df = df.drop_duplicates(subset=["id"], keep="last").set_index("id")
    report = {"rows": int(len(df) + len(dup) + unmatched), "matched": int(len(df) + len(dup)),
              "unmatched_rows": unmatched, "items_without_metadata": int(len(ids - set(df.index))),
              "duplicate_rows": int(len(dup)), "duplicate_ids": sorted(set(dup))[:5], "notes": notes}
    return df, report


def _match_keys(raw, refs: Sequence, file_col):  # refs: the catalog's ImageRefs
    """The item id each row of ``raw`` (read as text) belongs to, or None (NaN) where none; None
    when the table has neither an ``id`` nor a file column."""
    ids = {r.id for r in refs}
    by_path = {r.path: r.id for r in refs}
    by_name: dict[str, str] = {}
    for r in refs:
        by_name.setdefault(Path(r.path).name, r.id)
    keys = None
    if file_col is not None:
        f = raw[file_col].str.replace("\\", "/", regex=False)
        keys = f.map(lambda s: by_path.get(s) or by_path.get(_strip_dot(s)) or by_name.get(Path(s).name))
    if "id" in raw.columns:
        # an item id, else its unique last part ('tote-01' for 'bags/tote-01'), else a file name
        stems: dict[str, list[str]] = {}
        for i in ids:
            stems.setdefault(i.rsplit("/", 1)[-1], []).append(i)

        def item(s: str):
            s = s if s in ids else s.replace("\\", "/")  # a backslash is a '/'
            if s in ids:
                return s
            return stems[s][0] if len(stems.get(s, ())) == 1 else by_path.get(s) or by_name.get(s)

        id_keys = raw["id"].map(item)
        keys = id_keys if keys is None else keys.fillna(id_keys)
    return keys


def _strip_dot(path: str) -> str:
    """'./bags/x.jpg' -> 'bags/x.jpg'."""
    while path.startswith("./"):
        path = path[2:]
    return path
