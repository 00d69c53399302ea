"""Near-duplicate photos and products: what a catalog holds twice.

Two questions, one pass over the photo-level vectors (``Store.photos``):

- scope ``photos``: photos repeated within one product (the same bytes, or cosine at or above the
  threshold) -- embeddings spent twice, lists crowded by one picture;
- scope ``products``: pairs of different products that share a photo (the same bytes) or whose
  photos look identical (cosine at or above the threshold) -- listing errors and re-uploads; one
  row per product pair, its best photo pair.

Candidates come from each photo's few nearest neighbours (``search_rows``: exact below
``EXACT_BELOW`` photos, the HNSW index above), asked in batches of queries, plus the groups of
photos with the same content hash; no n x n matrix is ever formed, so a million photos take
memory for one batch. A pair whose photos are further apart than ``k`` neighbours (a photo with
more than ``k`` near-copies) can be missed.

The default threshold is per model (``DEFAULT_THRESHOLDS``), measured on the grocery feed's photos
(docs/dupes.md holds the figures); other models get ``FALLBACK_THRESHOLD`` with a note.
A file of labelled pairs (``pairs``) reports precision and recall at the threshold used, and the
threshold with the best F1, which is used when no threshold is given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vrec.base.errors import QueryError, check_number, suggest
from vrec.store.index import EXACT_BELOW, search_rows
from vrec.store.store import as_store

SCOPES = ("photos", "products")
# Cosine at or above which two photos count as the same picture, per model. effnet-lite0: on the
# grocery feed (81 products, 648 photos) no two distinct products' photos score above 0.941 (two
# Alpro yoghurt packshots), while re-encoded and shrunk copies score 0.90-0.99 (median 0.955).
DEFAULT_THRESHOLDS = {"effnet-lite0": 0.95}
FALLBACK_THRESHOLD = 0.95  # models not measured: the same figure, with a note to calibrate (--pairs)
NEIGHBOURS = 10  # nearest photos looked at per photo
TITLE_COLUMNS = ("title", "productDisplayName", "name")  # the metadata column that names a product
STAR_ABOVE = 10  # a hash shared by more members than this pairs each with the first (not all pairs)
TRUE = {"1", "true", "yes", "y", "t"}
FALSE = {"0", "false", "no", "n", "f"}


@dataclass
class DupesResult:
    """Pairs found (``table``, best first: identical bytes, then by score), the threshold used and
    where it came from, notes, and calibration figures when labelled pairs were given."""

    table: object  # pandas DataFrame
    model: str
    scope: str
    threshold: float
    threshold_source: str
    photos: int
    products: int
    notes: list[str] = field(default_factory=list)
    calibration: dict | None = None


def default_threshold(model: str) -> tuple[float, bool]:
    """The default threshold for a model, and whether it was measured for it (else the fallback)."""
    if model in DEFAULT_THRESHOLDS:
        return DEFAULT_THRESHOLDS[model], True
    return FALLBACK_THRESHOLD, False


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise QueryError(f"Unknown --scope {scope!r}; use photos (a photo repeated within one product) or "
                         f"products (two products sharing a photo).{suggest(str(scope), SCOPES)}")
    return scope


def find_dupes(store=None, model: str = "siglip", threshold: float | None = None, scope: str = "photos",
               pairs: str | None = None, batch: int = 1024, k: int = NEIGHBOURS) -> DupesResult:
    """Near-duplicate photos within products (``scope="photos"``) or products sharing a photo
    (``scope="products"``); see the module's docstring. ``pairs``: a CSV of labelled pairs
    (a, b, duplicate) to calibrate on."""
    import pandas as pd

    check_scope(scope)
    if threshold is not None:
        check_number("--threshold", threshold, min=0, max=1, hint="a cosine similarity, e.g. 0.95")
    check_number("--batch", batch, min=1, integer=True)
    st = as_store(store)
    ms = st.photos(model)
    items = ms.items().reset_index(drop=True)
    notes: list[str] = []
    n = len(items)
    if not n:
        raise QueryError(f"Model {model!r} holds no photos, so there are no duplicates to look for; run "
                         f"'vrec embed FOLDER --model {model}' first.")
    rows = items["row"].to_numpy()
    pos_of = np.full(ms.total_rows, -1, np.int64)
    pos_of[rows] = np.arange(n)
    product = items["product"].astype(str).to_numpy()
    hashes = items["hash"].astype(str).to_numpy()

    calibration = None
    if threshold is not None:
        source = "--threshold"
    else:
        threshold, measured = default_threshold(model)
        source = f"the default for {model}" if measured else "the fallback default"
    if pairs is not None:
        labelled = read_pairs(pairs, items, scope)
        scores, identical = _pair_scores(ms, items, labelled, scope)
        truth = labelled["duplicate"].to_numpy()
        best = best_threshold(scores, identical, truth)
        if source != "--threshold" and best is not None:
            threshold, source = best["threshold"], f"the best F1 on {pairs}"
        calibration = {"file": str(pairs), "pairs": int(len(truth)), "duplicates": int(truth.sum()),
                       "threshold": threshold, **confusion(scores, identical, truth, threshold),
                       "best": best}
    elif source == "the fallback default":
        notes.append(f"{threshold} is the default measured for effnet-lite0, not for {model}; check a few pairs "
                     f"below it, or calibrate with --pairs FILE (labelled pairs) or --threshold.")
    threshold = float(threshold)

    exact = None if _photo_index(ms, n) else True
    if n >= EXACT_BELOW and exact:
        entry = ms.manifest().get("index")
        why = ("its index is over products, not photos" if entry and entry.get("items") != n
               else "no up-to-date index" if not entry else "its index is out of date")
        notes.append(f"{n} photos, and {why}: each photo's neighbours are found by exact search, which takes long "
                     f"at this size" + ("." if entry and entry.get("items") != n
                                        else f"; run 'vrec index --model {model}' first."))
    a, b, s = _neighbour_pairs(ms, rows, pos_of, threshold, batch, k, exact)
    ha, hb = _hash_pairs(hashes, product if scope == "photos" else None)
    if len(ha):
        hs = np.einsum("ij,ij->i", ms.vectors_for_rows(rows[ha]), ms.vectors_for_rows(rows[hb]))
        a, b, s = np.r_[a, ha], np.r_[b, hb], np.r_[s, hs]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs_df = pd.DataFrame({"i": lo, "j": hi, "score": s.astype(np.float64)}).drop_duplicates(["i", "j"])
    i, j = pairs_df["i"].to_numpy(), pairs_df["j"].to_numpy()
    pairs_df["identical"] = hashes[i] == hashes[j]
    same = product[i] == product[j]
    pairs_df = pairs_df[same if scope == "photos" else ~same]
    titles = _titles(st, product)
    table = _photo_table(pairs_df, items, titles) if scope == "photos" else _product_table(pairs_df, items, titles)
    if scope == "photos" and len(np.unique(product)) == n:
        notes.append("every product here has one photo, so no photo can repeat within a product; "
                     "--scope products looks for photos shared between products.")
    return DupesResult(table.reset_index(drop=True), model, scope, threshold, source, n,
                       int(len(np.unique(product))), notes, calibration)


# --- candidates ------------------------------------------------------------------------------------

def _photo_index(ms, n: int) -> bool:
    """Whether the model's HNSW index is over its photos as they are now. A store of products keeps
    the index of its product rows (what ``vrec index`` builds there): photo searches must not use it."""
    entry = ms.manifest().get("index")
    return bool(entry) and entry.get("items") == n and entry.get("generation") == ms.generation


def _neighbour_pairs(ms, rows, pos_of, threshold: float, batch: int, k: int, exact: bool | None = None):
    """(a, b, score) positions of photo pairs at or above the threshold among each photo's k nearest."""
    found_a, found_b, found_s = [], [], []
    kk = min(k + 1, len(rows))
    for start in range(0, len(rows), batch):
        q = np.arange(start, min(len(rows), start + batch))
        nbr, scores = search_rows(ms, ms.vectors_for_rows(rows[q]), kk, exact=exact)
        nbr_pos = pos_of[nbr]
        keep = (scores >= threshold) & (nbr_pos != q[:, None]) & (nbr_pos >= 0)
        qi, col = np.nonzero(keep)
        found_a.append(q[qi])
        found_b.append(nbr_pos[qi, col])
        found_s.append(scores[qi, col])
    if not found_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_s)


def _hash_pairs(hashes: np.ndarray, within: np.ndarray | None):
    """Positions of photo pairs with the same content hash (within the same ``within`` value when
    given, e.g. the product); a group larger than STAR_ABOVE pairs each member with its first."""
    import pandas as pd

    keys = pd.Series(hashes) if within is None else pd.Series(hashes) + "\x00" + pd.Series(within)
    keys = keys[pd.Series(hashes) != ""]
    dup = keys[keys.duplicated(keep=False)]
    out_a, out_b = [], []
    for members in dup.groupby(dup.to_numpy(), sort=False).indices.values():
        idx = dup.index.to_numpy()[members]
        if len(idx) > STAR_ABOVE:
            out_a += [idx[0]] * (len(idx) - 1)
            out_b += list(idx[1:])
        else:
            for x in range(len(idx)):
                for y in range(x + 1, len(idx)):
                    out_a.append(idx[x])
                    out_b.append(idx[y])
    return np.asarray(out_a, np.int64), np.asarray(out_b, np.int64)


# --- tables ------------------------------------------------------------------------------------------

def _titles(st, product: np.ndarray) -> np.ndarray | None:
    """Each photo's product title from the store's metadata (keyed by product id), or None."""
    meta = st.metadata()
    col = next((c for c in TITLE_COLUMNS if c in meta.columns), None)
    if col is None:
        return None
    names = meta[col]
    names.index = names.index.astype(str)
    names = names[~names.index.duplicated()]
    return names.reindex(product).to_numpy(dtype=object)


def _sorted(table):
    return table.sort_values(["identical", "score"], ascending=[False, False], kind="stable")


def _photo_table(pairs_df, items, titles):
    import pandas as pd

    i, j = pairs_df["i"].to_numpy(), pairs_df["j"].to_numpy()
    ids, paths = items["id"].astype(str).to_numpy(), items["path"].astype(str).to_numpy()
    table = pd.DataFrame({"product": items["product"].astype(str).to_numpy()[i]})
    if titles is not None:
        table["title"] = titles[i]
    table = table.assign(a=ids[i], b=ids[j], photo_a=paths[i], photo_b=paths[j],
                         score=pairs_df["score"].to_numpy().round(4), identical=pairs_df["identical"].to_numpy())
    return _sorted(table)


def _product_table(pairs_df, items, titles):
    import pandas as pd

    i, j = pairs_df["i"].to_numpy(), pairs_df["j"].to_numpy()
    product = items["product"].astype(str).to_numpy()
    swap = product[i] > product[j]  # each product pair in one order: a < b
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    ids, paths = items["id"].astype(str).to_numpy(), items["path"].astype(str).to_numpy()
    table = pd.DataFrame({"a": product[i], "b": product[j]})
    if titles is not None:
        table["title_a"], table["title_b"] = titles[i], titles[j]
    table = table.assign(photo_id_a=ids[i], photo_id_b=ids[j], photo_a=paths[i], photo_b=paths[j],
                         score=pairs_df["score"].to_numpy().round(4), identical=pairs_df["identical"].to_numpy())
    table = _sorted(table).drop_duplicates(["a", "b"])  # one row per product pair: its best photo pair
    return table


# --- calibration -----------------------------------------------------------------------------------

def read_pairs(path, items, scope: str):
    """The labelled pairs of a CSV (columns a, b, duplicate), checked: every id known for the scope
    (photo ids for photos, product ids for products), duplicate 1/0, true/false or yes/no."""
    import pandas as pd

    from vrec.base.userfiles import read_bytes

    data = read_bytes(path, "--pairs file", "queries", "give a CSV file of labelled pairs (a, b, duplicate)",
                      QueryError)
    import io

    try:
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise QueryError(f"--pairs file {str(path)!r} is empty; it needs a header 'a,b,duplicate' and one row "
                         "per labelled pair.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise QueryError(f"Cannot read --pairs file {str(path)!r} as CSV ({reason}); save it as UTF-8 CSV.") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("a", "b", "duplicate") if c not in df.columns]
    if missing:
        raise QueryError(f"--pairs file {str(path)!r} lacks the column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(c) for c in missing)}; it needs a, b (two {_what(scope)} ids) and "
                         f"duplicate (1/0 or true/false).")
    if not len(df):
        raise QueryError(f"--pairs file {str(path)!r} has no pairs; add one row per labelled pair below the header.")
    df = df[["a", "b", "duplicate"]].apply(lambda c: c.str.strip())
    known = set(items["id" if scope == "photos" else "product"].astype(str))
    for line, row in enumerate(df.itertuples(index=False), start=2):
        for name in ("a", "b"):
            value = getattr(row, name)
            if value not in known:
                raise QueryError(f"--pairs file {str(path)!r} line {line}: {name} {value!r} is no {_what(scope)} id "
                                 f"of this store (with --scope {scope}, a and b are {_what(scope)} ids)."
                                 + suggest(value, known))
        if row.duplicate.lower() not in TRUE | FALSE:
            raise QueryError(f"--pairs file {str(path)!r} line {line}: duplicate is {row.duplicate!r}; write 1 or 0 "
                             "(true or false).")
    df["duplicate"] = df["duplicate"].str.lower().isin(TRUE)
    return df.reset_index(drop=True)


def _what(scope: str) -> str:
    return "photo" if scope == "photos" else "product"


def _pair_scores(ms, items, labelled, scope: str):
    """Each labelled pair's cosine (for products: the best over their photos) and whether they share
    the same bytes."""
    vec_of = dict(zip(items["id"].astype(str), items["row"]))
    hash_of = dict(zip(items["id"].astype(str), items["hash"].astype(str)))
    if scope == "photos":
        ra = ms.vectors_for_rows(labelled["a"].map(vec_of).to_numpy())
        rb = ms.vectors_for_rows(labelled["b"].map(vec_of).to_numpy())
        identical = (labelled["a"].map(hash_of) == labelled["b"].map(hash_of)).to_numpy()
        return np.einsum("ij,ij->i", ra, rb).astype(np.float64), identical
    groups = items.groupby(items["product"].astype(str), sort=False)
    rows_of = {p: g["row"].to_numpy() for p, g in groups}
    hashes_of = {p: set(g["hash"].astype(str)) - {""} for p, g in groups}
    scores, identical = [], []
    for a, b in zip(labelled["a"], labelled["b"]):
        scores.append(float((ms.vectors_for_rows(rows_of[a]) @ ms.vectors_for_rows(rows_of[b]).T).max()))
        identical.append(bool(hashes_of[a] & hashes_of[b]) and a != b)
    return np.asarray(scores), np.asarray(identical, bool)


def confusion(scores, identical, truth, threshold: float) -> dict:
    """Precision, recall and F1 of 'duplicate = same bytes or cosine >= threshold' on labelled pairs."""
    said = identical | (scores >= threshold)
    tp, fp, fn = int((said & truth).sum()), int((said & ~truth).sum()), int((~said & truth).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def best_threshold(scores, identical, truth) -> dict | None:
    """The threshold with the best F1 (the highest on a tie), placed halfway between the lowest
    score it calls a duplicate and the next score below (same calls, room on both sides), rounded
    down to 4 decimals. None without any duplicate among the pairs."""
    if not truth.any():
        return None
    candidates = sorted({math.floor(s * 10000) / 10000 for s in scores}, reverse=True)
    best = None
    for n, t in enumerate(candidates):
        figures = confusion(scores, identical, truth, t)
        if best is None or figures["f1"] > best[1]["f1"]:
            best = (n, figures)
    n, figures = best
    t = candidates[n]
    if n + 1 < len(candidates):
        t = math.floor((t + candidates[n + 1]) / 2 * 10000) / 10000
    return {"threshold": t, **confusion(scores, identical, truth, t)}
