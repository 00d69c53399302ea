"""``--filter`` expressions over item metadata: ``category=bags``, ``price<200``, ``colour in (red,black)``.

Several filters combine with AND. Text comparisons ignore case; ``<``, ``<=``, ``>``, ``>=`` compare
numbers. ``tag:NAME`` keeps items carrying that zero-shot tag (see ``vrec tag``).
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from .errors import FilterError, suggest

_IN = re.compile(r"^\s*([\w.-]+)\s+(not\s+in|in)\s*\((.*)\)\s*$", re.I)
_CMP = re.compile(r"^\s*([\w.-]+)\s*(!=|<=|>=|==|=|<|>)\s*(.*?)\s*$")
_TAG = re.compile(r"^\s*tag\s*:\s*(.+?)\s*$", re.I)


def _column(df, name: str):
    if name in df.columns:
        return df[name]
    lower = {c.lower(): c for c in df.columns}
    if name.lower() in lower:
        return df[lower[name.lower()]]
    raise FilterError(f"No column {name!r} to filter on.{suggest(name, df.columns)} Columns: {', '.join(map(str, df.columns))}.")


def _text(series):
    return series.astype(str).str.strip().str.lower()


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    return v


def parse_filter(expr: str, df) -> np.ndarray:
    """Boolean mask of the rows of ``df`` that satisfy one expression."""
    import pandas as pd

    m = _TAG.match(expr)
    if m:
        if "tags" not in df.columns:
            raise FilterError("Items have no tags yet; run 'vrec tag' before filtering with tag:NAME.")
        want = m.group(1).strip().lower()
        return df["tags"].fillna("").astype(str).map(lambda s: want in [t.strip().lower() for t in s.split(",")]).to_numpy()
    m = _IN.match(expr)
    if m:
        col, op, values = m.group(1), m.group(2).lower(), m.group(3)
        wanted = {_unquote(v).lower() for v in values.split(",") if v.strip()}
        hit = _text(_column(df, col)).isin(wanted).to_numpy()
        return ~hit if op.startswith("not") else hit
    m = _CMP.match(expr)
    if not m or not m.group(3):
        raise FilterError(
            f"Cannot read filter {expr!r}; write it like category=bags, price<200 or 'colour in (red,black)'."
        )
    col, op, value = m.group(1), m.group(2), _unquote(m.group(3))
    series = _column(df, col)
    if op in ("=", "=="):
        return (_text(series) == value.lower()).to_numpy()
    if op == "!=":
        return (_text(series) != value.lower()).to_numpy()
    try:
        number = float(value)
    except ValueError:
        raise FilterError(f"Filter {expr!r} compares with {op}, which needs a number, not {value!r}.") from None
    nums = pd.to_numeric(series, errors="coerce")
    result = {"<": nums < number, "<=": nums <= number, ">": nums > number, ">=": nums >= number}[op]
    return result.fillna(False).to_numpy(dtype=bool)


def apply_filters(df, filters: Sequence[str]) -> np.ndarray:
    """Mask of rows satisfying every filter (all rows when there are none)."""
    mask = np.ones(len(df), dtype=bool)
    for f in filters or ():
        mask &= parse_filter(f, df)
    return mask
