"""Queries in several languages: R@k and MRR per query language, and the cross-language protocol.

Two sources of multilingual text queries for ``vrec eval``:

- a queries file (``--queries``) with a ``lang`` column: besides the whole file, each language's
  rows form their own query set ("file [sv]"), so every model gets R@k and MRR per language;
- catalog columns holding the same text in several languages (``--language-columns
  en=description,sv=description_sv``; the grocery feed's English and Swedish descriptions): each
  product's text in each language is a query whose relevant items are those of that product.
  Only products with a text in every language are used, so the languages ask about the same
  products, query for query, and the gap between two languages is a paired difference with its
  bootstrap interval: how much a shopper typing Swedish loses against one typing English.
"""
from __future__ import annotations

import re
from itertools import combinations

import numpy as np

from vrec.base.errors import QueryError, suggest
from vrec.experiments.metrics import paired_difference
from vrec.experiments.text_queries import queries_from_frame, read_queries_frame
from vrec.store.filters import INTERNAL

LANG_COLUMNS = ("lang", "language")
_LANG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")  # a language tag: sv, en, pt-BR, zh-Hant


def parse_language_columns(spec: str | None) -> dict[str, str]:
    """``en=description,sv=description_sv`` -> {'en': 'description', 'sv': 'description_sv'}."""
    if spec is None:
        return {}
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        lang, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not _LANG.fullmatch(lang) or not column:
            raise QueryError(f"--language-columns takes LANG=COLUMN pairs, comma-separated, e.g. "
                             f"en=description,sv=description_sv (not {part!r}).")
        if lang.lower() in out:
            raise QueryError(f"--language-columns names language {lang!r} twice; give one column per language.")
        out[lang.lower()] = column
    twice = [c for c in dict.fromkeys(out.values()) if list(out.values()).count(c) > 1]
    if twice:
        raise QueryError(f"--language-columns names column {twice[0]!r} for two languages; give each language "
                         "its own column (the same text in another language).")
    if len(out) < 2:
        raise QueryError("--language-columns compares languages: name at least two, e.g. "
                         "en=description,sv=description_sv.")
    return out


def file_sets_by_language(table, path: str, notes: list[str]) -> list[tuple[str, list]]:
    """One query set per language of a queries file with a ``lang`` column ([] without one)."""
    df = read_queries_frame(path)
    col = next((c for c in df.columns if c.lower() in LANG_COLUMNS), None)
    if col is None:
        return []
    langs = df[col].str.strip().str.lower()
    known = sorted(set(langs) - {""})
    if not known:
        notes.append(f"queries file {path!r}: its {col!r} column is empty, so there is no figure per language")
        return []
    if (langs == "").any():
        notes.append(f"queries file: {int((langs == '').sum())} rows have no {col}; they count in 'file' only")
    sets = []
    for lang in known:
        qs = queries_from_frame(table, df[langs == lang].reset_index(drop=True), f"{path} [{col}={lang}]", [])
        sets.append((f"file [{lang}]", qs))
    notes.append(f"queries file: R@k and MRR per query language ({', '.join(known)}) from its {col!r} column")
    return sets


def column_sets_by_language(table, columns: dict[str, str], notes: list[str]) -> list[tuple[str, list]]:
    """The cross-language protocol: per language, one query per product (its text in that
    language's column), relevant = that product's items; the same products in every language."""
    for lang, col in columns.items():
        if col not in table.columns:
            texts = [str(c) for c in table.columns if c not in (*INTERNAL, "path") and table[c].dtype.kind in "OSU"]
            raise QueryError(f"No column {col!r} in the metadata for --language-columns {lang}={col}."
                             f"{suggest(col, table.columns)} Name a text column it has: {', '.join(texts) or 'none'}.")
    product = table["product"] if "product" in table.columns else table["id"]
    product = product.astype("string").fillna("").to_numpy(dtype=object)
    texts = {lang: table[col].astype("string").fillna("").str.strip().to_numpy(dtype=object)
             for lang, col in columns.items()}
    first = {}
    for i, p in enumerate(product):
        first.setdefault(p, i)
    complete = [p for p, i in first.items() if p and all(texts[lang][i] for lang in columns)]
    if not complete:
        raise QueryError(f"No product has a text in every column of --language-columns "
                         f"({', '.join(columns.values())}), so no query can be asked in every language.")
    left = len(first) - len(complete)
    notes.append(f"cross-language protocol: {len(complete)} products, each asked in {', '.join(columns)} "
                 f"(its {'/'.join(columns.values())}); relevant = that product's items"
                 + (f"; {left} products without a text in every language left out" if left else ""))
    sets = []
    for lang, col in columns.items():
        sets.append((f"{col} [{lang}]", [(texts[lang][first[p]], product == p) for p in complete]))
    return sets


def language_gaps(models: list[str], columns: dict[str, str], per_query: dict, n_boot: int, seed: int) -> list[dict]:
    """For each model and each pair of languages: the paired difference of every text figure
    (the same products asked in both languages), first language minus second."""
    gaps = []
    for m in models:
        for (la, ca), (lb, cb) in combinations(columns.items(), 2):
            for key, a in per_query.items():
                if key[0] != "text" or key[1] != f"{ca} [{la}]" or key[-1] != m:
                    continue
                b = per_query.get(("text", f"{cb} [{lb}]") + key[2:])
                if b is None or len(a) != len(b) or not len(a):
                    continue
                res = paired_difference(np.asarray(a), np.asarray(b), n_boot, seed)
                gaps.append({"model": m, "first": la, "second": lb, "metric": key[2], "k": key[3],
                             "difference": res["difference"], "ci": res["ci"], "excludes_zero": res["excludes_zero"]})
    return gaps
