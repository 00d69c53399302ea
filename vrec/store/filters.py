"""``--filter`` expressions over item metadata: ``category=bags``, ``price<200``, ``colour in (red,black)``.

Several filters combine with AND. Text comparisons ignore case; on a numeric column ``=`` and ``in``
also compare as numbers (``price=120`` matches 120.0). ``<``, ``<=``, ``>``, ``>=`` compare numbers
and refuse a text column. ``tag:NAME`` keeps items carrying that zero-shot tag (see ``vrec tag``).
Metadata columns named like vrec's own are filtered as ``meta_<name>`` (see ``search.catalog_table``).

The columns a filter may name are the ones a user sees in results and exports: item metadata, tags
and vrec's visible columns (id, path, width, height). The store's bookkeeping columns (row, hash,
size, mtime) are never shown, so a filter naming one is refused as an unknown column, and error
messages never offer them.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from vrec.base.errors import FilterError, suggest

_IN = re.compile(r"^\s*([\w.-]+)\s+(not\s+in|in)\s*\((.*)\)\s*$", re.I)
_CMP = re.compile(r"^\s*([\w.-]+)\s*(!=|<=|>=|==|=|<|>)\s*(.*?)\s*$")
_TAG = re.compile(r"^\s*tag\s*:\s*(.+?)\s*$", re.I)


# The store's bookkeeping, used to search and never shown nor exported: not filterable
# (vrec.search imports it as INTERNAL_COLUMNS).
INTERNAL = ("row", "hash", "size", "mtime")
RESULT_COLUMNS = ("rank", "score", "probability")  # computed by the search, after filtering


def filterable_columns(df) -> list[str]:
    """The columns a filter may name: metadata, tags and the visible vrec ones (id, path, width, height)."""
    return [str(c) for c in df.columns if c not in INTERNAL]


def _column(df, name: str):
    columns = [c for c in df.columns if c not in INTERNAL]
    if name in columns:
        return df[name]
    lower = {str(c).lower(): c for c in columns}
    if name.lower() in lower:
        return df[lower[name.lower()]]
    usable = [str(c) for c in columns]
    renamed = f"meta_{name.lower()}"
    if name.lower() in RESULT_COLUMNS:
        why = f"Cannot filter on {name!r}: search results get it after filtering"
        if renamed in usable:
            raise FilterError(f"{why}; your metadata column {name!r} is named {renamed!r} here.")
        raise FilterError(f"{why}; filter on item metadata instead (columns: {', '.join(usable)}).")
    if name.lower() in INTERNAL and renamed in usable:  # e.g. a clothing "size" column
        raise FilterError(f"No column {name!r} to filter on: your metadata column {name!r} is named {renamed!r} here.")
    raise FilterError(f"No column {name!r} to filter on.{suggest(name, usable)} Columns: {', '.join(usable)}.")


def _text(series):
    return series.astype(str).str.strip().str.lower()


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    return v


def parse_filter(expr: str, df) -> np.ndarray:
    """Boolean mask of the rows of ``df`` that satisfy one expression."""
    m = _TAG.match(expr)
    if m:
        if "tags" not in df.columns:
            raise FilterError("Items have no tags yet; run 'vrec tag' before filtering with tag:NAME.")
        want = m.group(1).strip().lower()
        return df["tags"].fillna("").astype(str).map(lambda s: want in [t.strip().lower() for t in s.split(",")]).to_numpy()
    m = _IN.match(expr)
    if m:
        col, op, values = m.group(1), m.group(2).lower(), m.group(3)
        wanted = [_unquote(v) for v in values.split(",") if v.strip()]
        hit = _equals(_column(df, col), wanted)
        return ~hit if op.startswith("not") else hit
    m = _CMP.match(expr)
    if not m or not m.group(3):
        raise FilterError(
            f"Cannot read filter {expr!r}; write it like category=bags, price<200 or 'colour in (red,black)'."
        )
    col, op, value = m.group(1), m.group(2), _unquote(m.group(3))
    series = _column(df, col)
    if op in ("=", "==", "!="):
        hit = _equals(series, [value])
        return ~hit if op == "!=" else hit
    try:
        number = float(value)
    except ValueError:
        raise FilterError(f"Filter {expr!r} compares with {op}, which needs a number, not {value!r}.") from None
    if number != number:
        raise FilterError(f"Filter {expr!r} compares with NaN, which matches nothing; give a number.")
    nums = _numbers(series)
    if nums.notna().sum() == 0 and series.notna().any():
        example = series.dropna().astype(str).iloc[0][:40]
        raise FilterError(f"Column {series.name!r} holds text (e.g. {example!r}), not numbers, so {expr!r} cannot "
                          f"compare it with {op}; use {series.name}=VALUE or '{series.name} in (A,B)'.")
    result = {"<": nums < number, "<=": nums <= number, ">": nums > number, ">=": nums >= number}[op]
    return result.fillna(False).to_numpy(dtype=bool)


def _numbers(series):
    import pandas as pd

    if series.dtype == bool:
        return series.astype(float)
    return pd.to_numeric(series, errors="coerce")


def _equals(series, values) -> np.ndarray:
    """Rows equal to any of ``values``: as numbers in a numeric column (so 120 matches 120.0), else as text."""
    import pandas as pd

    text = _text(series).isin([v.strip().lower() for v in values]).to_numpy()
    if pd.api.types.is_numeric_dtype(series) and series.dtype != bool:
        wanted = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna()
        if len(wanted):
            text = text | series.isin(wanted.astype(float).tolist()).to_numpy()
    return text


def apply_filters(df, filters: Sequence[str]) -> np.ndarray:
    """Mask of rows satisfying every filter (all rows when there are none)."""
    mask = np.ones(len(df), dtype=bool)
    for f in filters or ():
        mask &= parse_filter(f, df)
    return mask
