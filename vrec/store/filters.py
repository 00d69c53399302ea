"""``--filter`` expressions over item metadata: ``category=bags``, ``price<200``, ``colour in (red,black)``.

Several filters combine with AND. Text comparisons ignore case; on a numeric column ``=`` and ``in``
also compare as numbers (``price=120`` matches 120.0) and refuse a value that is not a number
(``price=abc`` would match nothing). ``<``, ``<=``, ``>``, ``>=`` compare numbers and refuse a text
column. An operator vrec does not have (``price=<100``, ``price=>5``, ``price<>5``, ``price===5``,
``price!5``) is refused with the one meant (``did you mean price<=100?``) rather than read as ``=``
with the value ``<100``; on a text column ``=`` still takes such a value as text when it matches,
and a quoted one (``title='<b>'``) always. ``tag:NAME`` keeps items carrying that zero-shot tag (see ``vrec tag``).
Metadata columns named like vrec's own are filtered as ``meta_<name>`` (see ``search.catalog_table``).

The columns a filter may name are the ones a user sees in results and exports: item metadata, tags
and vrec's visible columns (id, path, width, height). The store's bookkeeping columns (row, hash,
size, mtime) are never shown, so a filter naming one is refused as an unknown column, and error
messages never offer them.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

import numpy as np

from vrec.base.errors import FilterError, suggest

_IN = re.compile(r"^\s*([\w.-]+)\s+(not\s+in|in)\s*\((.*)\)\s*$", re.I)
_CMP = re.compile(r"^\s*([\w.-]+)\s*(!=|<=|>=|==|=|<|>)\s*(.*?)\s*$")
_TAG = re.compile(r"^\s*tag\s*:\s*(.+?)\s*$", re.I)


# The store's bookkeeping, used to search and never shown nor exported: not filterable
# (vrec.search imports it as INTERNAL_COLUMNS).
INTERNAL = ("row", "hash", "size", "mtime", "product", "position")
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
        series = _column(df, col)
        _check_numbers(expr, series, wanted)
        hit = _equals(series, wanted)
        _check_spelling(expr, series, wanted)
        return ~hit if op.startswith("not") else hit
    m = _CMP.match(expr)
    if not m or not m.group(3):
        raise FilterError(f"Cannot read filter {expr!r}; {_did_you_mean(expr)}")
    return _compare(expr, m.group(1), m.group(2), m.group(3), df)


def _compare(expr: str, col: str, op: str, raw: str, df) -> np.ndarray:
    """Rows satisfying COLUMN OP VALUE (``raw``: the value as typed, quotes included)."""
    series = _column(df, col)
    text = not _is_numeric(series)
    if op not in ("=", "==") or not text:
        _check_operator(expr, col, op, raw, text)
    value = _unquote(raw)
    if op in ("=", "==", "!="):
        _check_numbers(expr, series, [value])
        hit = _equals(series, [value])
        if op != "!=" and not hit.any():  # colour=!red on a text column: matched as text first
            _check_operator(expr, col, op, raw, text)
            _check_spelling(expr, series, [value])
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


HOW = "write it like category=bags, price<200 or 'colour in (red,black)'."
OPERATORS = "=, !=, <, <=, >, >="
# what a user may have meant by an operator vrec does not have
_MEANT = {"=<": "<=", "=>": ">=", "<>": "!=", "=!": "!=", "!==": "!=", "===": "=", "=<=": "<=", "=>=": ">=",
          "<==": "<=", ">==": ">=", "!": "!="}


def _did_you_mean(expr: str) -> str:
    """How to write an expression that does not read as a filter: 'price!100' means price!=100."""
    m = re.match(r"^\s*([\w.-]+)\s*!\s*([^=\s].*?)\s*$", expr)
    if m:
        return f"did you mean {m.group(1)}!={m.group(2)}?"
    return HOW


def _check_operator(expr: str, col: str, op: str, raw: str, text: bool) -> None:
    """Refuse an operator vrec does not have (price=<100, price<>5, price===5): read as '=' with
    the value '<100' it would silently match nothing. On a text column '=' takes such a value as
    text (checked only when it matches nothing), and a quoted value always."""
    if raw[:1] not in ("<", ">", "=", "!"):
        return
    run = re.match(r"[<>=!\s]*", raw).group(0)
    ops, rest = re.sub(r"\s", "", op + run), raw[len(run):]
    meant = _MEANT.get(ops)
    if meant and rest and not (text and meant not in ("=", "!=")):
        hint = f"did you mean {col}{meant}{rest}?"
    elif text and op in ("=", "=="):
        hint = f"{col} holds text, which compares with =, != or in (quote a value that starts with {raw[0]!r}: {col}='{raw}')."
    else:
        hint = f"use one of {OPERATORS}."
    raise FilterError(f"Filter {expr!r} has no comparison {ops!r}; {hint}")


MAX_SPELLING_VALUES = 10_000  # distinct values a misspelt one is compared with (more: an id-like column)


def _check_spelling(expr: str, series, values) -> None:
    """FilterError for a value that no item has but that is close to one that some have (baseColour=Blak:
    did you mean 'Black'?); a value without a close one (a plain miss) matches nothing, as asked. Costs one
    pass over the column's values (about 3 ms for 100,000 rows), like the filter itself."""
    if _is_numeric(series):
        return
    have = series.dropna().astype(str).str.strip()
    distinct = have.unique()
    if len(distinct) > MAX_SPELLING_VALUES:
        return
    lower = {v.lower(): v for v in distinct}
    for value in values:
        want = value.strip()
        if not want or want.lower() in lower:
            continue
        close = suggest_value(want, distinct)
        if close:
            raise FilterError(f"No item has {series.name} {want!r} (filter {expr!r}). Did you mean "
                              + " or ".join(repr(c) for c in close) + "? Correct the filter, or drop it.")


def suggest_value(value: str, values, n: int = 3) -> list[str]:
    """The values closest to a misspelt ``value`` (case ignored), closest first; [] when none is close."""
    by_lower: dict[str, str] = {}
    for v in values:
        by_lower.setdefault(str(v).lower(), str(v))
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=n, cutoff=0.75)
    return [by_lower[c] for c in close]


def _is_numeric(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and series.dtype != bool


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _check_numbers(expr: str, series, values) -> None:
    """Refuse a value that is not a number where the column holds numbers (price=abc): it would
    match nothing, silently."""
    if not _is_numeric(series):
        return
    bad = next((v for v in values if _as_number(v) is None), None)
    if bad is None:
        return
    known = series.dropna()
    example = f"{series.name}={known.iloc[0]:g}" if len(known) else f"{series.name}=120"
    raise FilterError(f"Column {series.name!r} holds numbers, but {bad!r} in filter {expr!r} is not one (it would "
                      f"match nothing); give a number, e.g. {example}.")


def _numbers(series):
    import pandas as pd

    if series.dtype == bool:
        return series.astype(float)
    return pd.to_numeric(series, errors="coerce")


def _equals(series, values) -> np.ndarray:
    """Rows equal to any of ``values``: as numbers in a numeric column (so 120 matches 120.0), else as text."""
    text = _text(series).isin([v.strip().lower() for v in values]).to_numpy()
    if _is_numeric(series):
        wanted = [n for n in map(_as_number, values) if n is not None]
        if wanted:
            text = text | series.isin(wanted).to_numpy()
    return text


def filter_columns(filters: Sequence[str], columns) -> list[str] | None:
    """The columns among ``columns`` that the filters name, as ``parse_filter`` finds them (so a
    query reads only those), or None when one does not read as a filter on a known column: its
    error lists every column, so it needs them all."""
    usable = [str(c) for c in columns if c not in INTERNAL]
    lower = {c.lower(): c for c in usable}  # the last of equal names, as _column picks
    named = []
    for expr in filters or ():
        m = _TAG.match(expr) or _IN.match(expr) or _CMP.match(expr)
        if m is None or (m.re is _CMP and not m.group(3)):
            return None
        name = "tags" if m.re is _TAG else m.group(1)
        found = name if name in usable else lower.get(name.lower())
        if found is None:
            return None
        named.append(found)
    return list(dict.fromkeys(named))


def apply_filters(df, filters: Sequence[str]) -> np.ndarray:
    """Mask of rows satisfying every filter (all rows when there are none)."""
    mask = np.ones(len(df), dtype=bool)
    for f in filters or ():
        mask &= parse_filter(f, df)
    return mask


def selections(filters: Sequence[str]) -> dict:
    """What the filters select, per column name in lower case, for showing a facet's chosen values:
    ``{"category": {"values": {"bags"}}, "price": {"min": 100.0, "max": 200.0}, "tags": {"values": {"red"}}}``.

    Values (lower case) come from ``=``, ``==`` and ``in``; bounds from ``<``, ``<=``, ``>``, ``>=`` (the
    tightest of each side; whether a bound is strict is not kept). Filters that do not read as one are
    left out: ``apply_filters`` says what is wrong with them.
    """
    out: dict = {}
    for expr in filters or ():
        m = _TAG.match(expr)
        if m:
            out.setdefault("tags", {}).setdefault("values", set()).add(m.group(1).strip().lower())
            continue
        m = _IN.match(expr)
        if m:
            if not m.group(2).lower().startswith("not"):
                wanted = {_unquote(v).strip().lower() for v in m.group(3).split(",") if v.strip()}
                out.setdefault(m.group(1).lower(), {}).setdefault("values", set()).update(wanted)
            continue
        m = _CMP.match(expr)
        if not m or not m.group(3):
            continue
        col, op, value = m.group(1).lower(), m.group(2), _unquote(m.group(3))
        if op in ("=", "=="):
            out.setdefault(col, {}).setdefault("values", set()).add(value.strip().lower())
        elif op in ("<", "<=", ">", ">=") and _as_number(value) is not None:
            side, pick = ("max", min) if op.startswith("<") else ("min", max)
            have = out.setdefault(col, {}).get(side)
            out[col][side] = float(value) if have is None else pick(have, float(value))
    return out


def value_filter(column: str, value) -> str | None:
    """The filter expression selecting one value of a column (``category=bags``, ``title='<b>'``), or None
    when the column's name cannot be written in a filter."""
    if not re.fullmatch(r"[\w.-]+", str(column)):
        return None
    text = str(value)
    if text[:1] in "<>=!'\"" or text != text.strip():
        quote = "'" if "'" not in text else '"'
        text = f"{quote}{text}{quote}"
    return f"{column}={text}"
