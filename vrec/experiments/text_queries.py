"""Text queries for evaluation: from a template over metadata columns (``--text-template``) or from a
file of queries with their relevant items (``--queries``), checked against the catalog's metadata."""
from __future__ import annotations

import string

import numpy as np

from vrec.base.errors import FilterError, QueryError, suggest


def template_fields(template: str) -> list[str]:
    """The metadata columns a text template names, e.g. ['baseColour', 'articleType'].

    Placeholders are ``{column}``; ``{{`` and ``}}`` stand for literal braces. A template without
    a placeholder, or one that is not well formed, is refused: it would give one query for all.
    """
    example = "e.g. 'a photo of a {baseColour} {articleType}'"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise QueryError(f"The text template {template!r} is not well formed ({e}); write placeholders as "
                         f"{{column}} and literal braces as {{{{ }}}}, {example}.") from None
    cols = []
    for _, field_name, spec, conv in parts:
        if field_name is None:
            continue
        if not field_name.strip() or spec or conv:
            raise QueryError(f"The text template {template!r} has a placeholder that is not a plain "
                             f"{{column}} name; {example}.")
        cols.append(field_name)
    if not cols:
        raise QueryError(f"The text template {template!r} names no metadata column, so every query would be the "
                         f"same text; put a column in braces, {example}.")
    return list(dict.fromkeys(cols))


def text_queries_from_template(table, template: str) -> list[tuple[str, np.ndarray]]:
    """One query per combination of label values named in the template, with its relevant items."""
    cols = template_fields(template)
    for c in cols:
        if c not in table.columns:
            raise QueryError(f"The text template names {{{c}}}, which is not a metadata column.{suggest(c, table.columns)}")
    parts = list(string.Formatter().parse(template))
    out = []
    for values, grp in table.groupby(cols, dropna=True):
        values = dict(zip(cols, values if isinstance(values, tuple) else (values,)))
        if any(str(v).strip() == "" for v in values.values()):
            continue
        text = "".join(lit + (str(values[f]) if f is not None else "") for lit, f, _, _ in parts)
        mask = np.zeros(len(table), bool)
        mask[grp.index.to_numpy()] = True
        out.append((text, mask))
    return out


MAX_ROW_NOTES = 5  # skipped rows of a queries file named one by one; the rest are counted


def text_queries_from_file(table, path: str, notes: list[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """A CSV with a 'query' column and either 'relevant_ids' (separated by ';') or 'filter'.

    A row that cannot be scored -- no query text, no relevant_ids and no filter, ids that are all
    unknown, a filter matching nothing -- is skipped with a note (appended to ``notes``), so one
    bad row does not stop a long file; a file with no usable row is an error.
    """
    return queries_from_frame(table, read_queries_frame(path), path, notes)


def read_queries_frame(path: str):
    """A queries file as a DataFrame of text columns, its header checked (one clear error otherwise)."""
    import io

    import pandas as pd

    from vrec.base.userfiles import read_bytes

    data = read_bytes(path, "Queries file", "queries", "give a CSV file of queries", QueryError)
    try:
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise QueryError(f"Queries file {path!r} is empty; it needs a header 'query,relevant_ids' (or "
                         f"'query,filter') and one row per query.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise QueryError(f"Cannot read queries file {path!r} as CSV ({reason}); save it as UTF-8 CSV.") from None
    df.columns = [str(c).strip() for c in df.columns]
    if "query" not in df.columns or not ({"relevant_ids", "filter"} & set(df.columns)):
        raise QueryError(f"Queries file {path!r} needs a 'query' column and a 'relevant_ids' or 'filter' column.")
    if not len(df):
        raise QueryError(f"Queries file {path!r} has no queries; add one row per query below the header.")
    return df


def queries_from_frame(table, df, path: str, notes: list[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """The scorable queries of a queries file's rows (see ``text_queries_from_file``)."""
    from vrec.store.filters import apply_filters

    ids = table["id"].astype(str)
    known = set(ids)
    out, skipped, partial = [], [], []
    for i, row in enumerate(df.to_dict("records"), start=1):
        text = row["query"].strip()
        rel_ids = row.get("relevant_ids", "").strip()
        flt = row.get("filter", "").strip()
        where = f"row {i}" + (f" ({text!r})" if text else "")
        if not text:
            skipped.append(f"{where} has no query text")
            continue
        if rel_ids:
            wanted = list(dict.fromkeys(s.strip() for s in rel_ids.split(";") if s.strip()))
            missing = [w for w in wanted if w not in known]
            mask = ids.isin(wanted).to_numpy()
            if not mask.any():
                skipped.append(f"{where}: none of its relevant_ids ({_some(missing)}) is among the evaluated items")
                continue
            if missing:
                partial.append(f"{where}: {len(missing)} of its {len(wanted)} relevant_ids are not among the evaluated "
                               f"items ({_some(missing)}); scored on the others")
        elif flt:
            try:
                mask = apply_filters(table, [f.strip() for f in flt.split("&&") if f.strip()])
            except FilterError as e:
                raise FilterError(f"Queries file {path!r}, {where}: {e}") from None
            if not mask.any():
                skipped.append(f"{where}: its filter {flt!r} matches no item")
                continue
        else:
            skipped.append(f"{where} has neither relevant_ids nor a filter, so nothing would count as a hit")
            continue
        out.append((text, mask))
    if not out:
        raise QueryError(f"None of the {len(df)} queries in {path!r} can be scored ({skipped[0]}); give each row "
                         f"relevant_ids of catalog items or a filter that matches some.")
    if notes is not None:
        notes += [f"queries file {p}" for p in partial[:MAX_ROW_NOTES]]
        notes += [f"queries file {s}; row skipped" for s in skipped[:MAX_ROW_NOTES]]
        more = len(partial[MAX_ROW_NOTES:]) + len(skipped[MAX_ROW_NOTES:])
        if more:
            notes.append(f"queries file: {more} more rows like those above")
        if skipped:
            notes.append(f"text->image 'file' uses {len(out)} of the {len(df)} queries in {path!r}")
    return out


def _some(values: list[str], n: int = 3) -> str:
    return ", ".join(values[:n]) + (f" and {len(values) - n} more" if len(values) > n else "")
