"""Interaction logs as ground truth: ``vrec eval --interactions events.csv``.

A "similar items" module is right when the items it shows next to an item are the ones shoppers
look at, put in a cart or buy *together with* it. An event log (one row per event: session or
user, item, event type, timestamp) gives exactly that:

- **sessions**: the session column groups events (or the user column, split into visits by
  ``session_gap`` minutes without an event). Sessions of more than ``MAX_SESSION_ITEMS`` distinct
  items (crawlers, bots) are left out, with a note.
- **relevance**: in a session an item weighs its strongest event (``DEFAULT_WEIGHTS``: view 1 <
  cart 3 < purchase 5; other event names weigh 1, with a note). For a query item i, the relevance
  of item j is the sum, over the sessions holding both, of j's weight there: co-viewed once = 1,
  co-viewed in two sessions and bought in one = 1 + 5.
- **metrics** (each model's own top-k lists, the ones ``vrec neighbours`` writes): nDCG@k with
  these graded gains (ideal = the query's k most relevant items), hit@k (a co-occurring item in the
  top k) and MRR (1 / rank of the first co-occurring item in the top max(k), else 0), over the query
  items with at least one co-occurring item; with 95% bootstrap intervals and, for two models, a
  paired difference over the same query items. Reported overall and for the **cold-start slice**:
  items with fewer than ``cold_events`` events, or first seen in the last ``LATE_SHARE`` (10%) of
  the log's time span.

Streaming, in bounded memory: the log is read in chunks of ``CHUNK_ROWS`` rows (CSV through
pandas, Parquet through pyarrow) and never whole. Sessions need not be contiguous or ordered: each
chunk's events (mapped to catalog positions, 24 bytes each) are hash-partitioned by session into
``.npy`` files in a temporary folder, so every session lands in one partition; each partition
(about ``PARTITION_EVENTS`` events) is then grouped and its co-occurring pairs are summed into a
sparse item x item matrix, in batches of at most ``PAIR_BATCH`` pairs. Peak memory is about one
chunk + one partition + one pair batch + the sparse matrix (12 bytes per distinct co-occurring pair
once built, about three times that while batches are merged into it): it follows the distinct
pairs, which the session cap bounds, not the log's length. bench/interactions.py measures it (10M
events over 100k items: 1.3 GB). Temporary disk: 24 bytes per kept event, removed afterwards.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vrec.base.errors import QueryError, check_number, suggest
from vrec.experiments.metrics import Metric, bootstrap_ci

DEFAULT_COLUMNS = {"session": "session", "item": "item", "event": "event", "time": "timestamp"}
SESSION_FALLBACK = "user"  # used as the session column when the log has no 'session' column
DEFAULT_WEIGHTS = {"view": 1.0, "click": 1.0, "cart": 3.0, "add_to_cart": 3.0, "purchase": 5.0, "order": 5.0}
MAX_SESSION_ITEMS = 200
COLD_EVENTS = 5
LATE_SHARE = 0.1
CHUNK_ROWS = 250_000
PARTITION_EVENTS = 2_000_000  # events per partition, about 48 MB of records
PAIR_BATCH = 2_000_000
RECORD = np.dtype([("session", "<u8"), ("item", "<i4"), ("weight", "<f4"), ("time", "<f8")])
METRICS = ("ndcg", "hit", "mrr")


@dataclass
class Relevance:
    """What a log says about the catalog's items: graded co-occurrence and each item's history."""

    matrix: object  # scipy.sparse.csr_matrix [n, n]: relevance of column j for query row i (zero diagonal)
    events: np.ndarray  # events per item
    first_seen: np.ndarray  # time of each item's first event (seconds; NaN without one or without times)
    cold: np.ndarray  # bool per item: the cold-start slice
    stats: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --- options --------------------------------------------------------------------------------------

def parse_pairs(text: str | None, option: str, example: str) -> dict[str, str]:
    """'a=b,c=d' -> {'a': 'b', 'c': 'd'} (keys lower-cased)."""
    out = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise QueryError(f"{option} takes NAME=VALUE pairs separated by commas, e.g. {example} (not {part!r}).")
        out[key.strip().lower()] = value.strip()
    return out


def parse_columns(text: str | None) -> dict[str, str]:
    cols = parse_pairs(text, "--interaction-columns", "session=user_id,item=sku,event=type,time=ts")
    unknown = set(cols) - set(DEFAULT_COLUMNS)
    if unknown:
        raise QueryError(f"--interaction-columns knows {', '.join(DEFAULT_COLUMNS)}, not {', '.join(sorted(unknown))}; "
                         "e.g. session=user_id,item=sku.")
    return cols


def parse_weights(text: str | None) -> dict[str, float]:
    pairs = parse_pairs(text, "--event-weights", "view=1,cart=3,purchase=5")
    weights = dict(DEFAULT_WEIGHTS)
    for name, value in pairs.items():
        check_number(f"--event-weights {name}", value, min=0, max=1e6, hint="e.g. view=1,cart=3,purchase=5")
        weights[name] = float(value)
    return weights


def check_options(session_gap: float | None, cold_events: int) -> None:
    if session_gap is not None:
        check_number("--session-gap", session_gap, min=0.001, max=525_600, hint="minutes, e.g. 30")
    check_number("--cold-events", cold_events, min=1, max=1_000_000_000, integer=True, hint="e.g. 5")


# --- reading the log ------------------------------------------------------------------------------

def _open(path) -> tuple[object, bool]:
    from vrec.base.userfiles import open_file

    fh = open_file(path, "--interactions", "give the CSV or Parquet file of events (session, item, event, "
                   "timestamp)", QueryError)
    return fh, str(path).lower().endswith((".parquet", ".pq"))


def _columns(path, fh, parquet: bool, wanted: dict[str, str]) -> dict[str, str]:
    """The log's columns for session, item, event and time (the last two may be absent)."""
    import pandas as pd

    try:
        if parquet:
            import pyarrow.parquet as pq

            header = pq.ParquetFile(fh).schema_arrow.names
        else:
            header = list(pd.read_csv(fh, nrows=0).columns)
            fh.seek(0)
    except (ValueError, OSError, pd.errors.ParserError) as e:  # ArrowInvalid is a ValueError
        kind = "Parquet" if parquet else "CSV"
        raise QueryError(f"Cannot read the interaction log {str(path)!r} as {kind} ({str(e).splitlines()[0]}); "
                         f"give a {kind} file of events (session, item, event, timestamp).") from None
    cols = {**DEFAULT_COLUMNS, **wanted}
    if "session" not in wanted and cols["session"] not in header and SESSION_FALLBACK in header:
        cols["session"] = SESSION_FALLBACK
    for role in ("session", "item"):
        if cols[role] not in header:
            raise QueryError(f"The interaction log {str(path)!r} has no {cols[role]!r} column for the {role}."
                             f"{suggest(cols[role], header)} Name it with --interaction-columns {role}=COLUMN.")
    for role in ("event", "time"):
        if cols[role] not in header:
            if role in wanted:
                raise QueryError(f"The interaction log {str(path)!r} has no {cols[role]!r} column for the {role}."
                                 f"{suggest(cols[role], header)}")
            cols[role] = None
    return cols


def _chunks(path, fh, parquet: bool, cols: dict, chunk_rows: int):
    import pandas as pd

    names = [c for c in cols.values() if c]
    if parquet:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(fh).iter_batches(batch_size=chunk_rows, columns=names):
            yield batch.to_pandas()
    else:
        dtypes = {cols[r]: "string" for r in ("session", "item", "event") if cols[r]}
        try:
            yield from pd.read_csv(fh, usecols=names, dtype=dtypes, chunksize=chunk_rows)
        except (ValueError, pd.errors.ParserError) as e:
            raise QueryError(f"Cannot read the interaction log {str(path)!r} as CSV ({e}); check its format.") from None


def _seconds(values) -> np.ndarray:
    """Timestamps as float seconds: numbers as they are, text parsed as dates (NaN where unreadable)."""
    import pandas as pd

    num = pd.to_numeric(values, errors="coerce")
    if num.notna().sum() >= values.notna().sum():
        return num.to_numpy(np.float64)
    dt = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    sec = dt.dt.tz_localize(None).to_numpy("datetime64[ns]").astype(np.int64) / 1e9
    return np.where(dt.isna().to_numpy(), np.nan, sec)


def co_occurrence(path, ids: Sequence[str], columns: dict[str, str] | None = None,
                  weights: dict[str, float] | None = None, session_gap: float | None = None,
                  cold_events: int = COLD_EVENTS, chunk_rows: int = CHUNK_ROWS,
                  partitions: int | None = None) -> Relevance:
    """Stream the log at ``path`` into graded relevance between the catalog items ``ids`` (positions
    in that order); see the module docstring for the rules and the memory bound."""

    check_options(session_gap, cold_events)
    weights = {k.lower(): v for k, v in (weights or DEFAULT_WEIGHTS).items()}
    n = len(ids)
    index = _id_index(ids)
    fh, parquet = _open(path)
    with fh, tempfile.TemporaryDirectory(prefix="vrec-interactions-") as tmp:
        cols = _columns(path, fh, parquet, columns or {})
        if session_gap is not None and not cols["time"]:
            raise QueryError(f"--session-gap splits sessions by time, and the interaction log {str(path)!r} has no "
                             f"{DEFAULT_COLUMNS['time']!r} column; name its time column with --interaction-columns "
                             "time=COLUMN, or leave --session-gap out.")
        size = os.fstat(fh.fileno()).st_size
        parts = partitions or max(1, int(size / 40 / PARTITION_EVENTS) + 1)  # ~40 bytes per CSV row
        events = np.zeros(n, np.int64)
        first = np.full(n, np.inf)
        stats = {"events": 0, "kept": 0, "unknown_items": 0, "bad_rows": 0}
        unknown_events: set[str] = set()
        for c, chunk in enumerate(_chunks(path, fh, parquet, cols, chunk_rows)):
            rec = _records(chunk, cols, index, weights, stats, unknown_events)
            events += np.bincount(rec["item"], minlength=n)
            if cols["time"]:
                np.fmin.at(first, rec["item"], rec["time"])
            for p in range(parts):
                sel = rec[rec["session"] % parts == p]
                if len(sel):
                    np.save(Path(tmp) / f"{p}-{c}.npy", sel)
        _check_kept(path, stats, cols, ids)
        matrix, pstats = _pairs(Path(tmp), parts, n, session_gap)
    stats.pop("unknown_example", None)
    stats.update(pstats)
    first[np.isinf(first)] = np.nan
    rel = Relevance(matrix, events, first, _cold(events, first, cold_events), stats)
    _notes(rel, cols, weights, session_gap, cold_events, unknown_events)
    return rel


def _check_kept(path, stats: dict, cols: dict, ids: Sequence[str]) -> None:
    """A log none of whose events can be used is a mistake (another catalog's ids, the wrong column), not a
    result of dashes: one error saying why."""
    if stats["kept"]:
        return
    where = f"The interaction log {str(path)!r}"
    if not stats["events"]:
        raise QueryError(f"{where} holds no events; give a log with one row per event.")
    if stats["unknown_items"]:
        example = f" (the catalog's ids look like {str(ids[0])!r})" if len(ids) else ""
        raise QueryError(f"None of the {stats['events']:,} events in {where[4:]} names an item of the evaluated "
                         f"catalog: its {cols['item']!r} column holds e.g. {stats.get('unknown_example', '')!r}"
                         f"{example}; name the column of catalog ids with --interaction-columns item=COLUMN.")
    if stats["bad_rows"]:
        raise QueryError(f"No event in {where[4:]} has a readable {cols['time']!r}; give ISO dates or seconds, or "
                         "name the time column with --interaction-columns time=COLUMN.")
    raise QueryError(f"No event in {where[4:]} has a {cols['session']!r}; fill it in, or name the session column "
                     "with --interaction-columns session=COLUMN.")


def _id_index(ids: Sequence[str]):
    """Catalog positions by id, and by the id's last part where that is unique: a catalog of photo
    folders has ids such as 'bags/bag-tote-red', and the shop's own log says 'bag-tote-red' (as
    search-image takes a short id)."""
    import pandas as pd

    full = pd.Series(range(len(ids)), index=[str(i) for i in ids], dtype=np.int64)
    short = full.copy()
    short.index = [i.rsplit("/", 1)[-1] for i in full.index]
    short = short[~short.index.duplicated(keep=False) & ~short.index.isin(full.index)]
    both = pd.concat([full, short])
    return pd.Index(both.index), both.to_numpy()


def _records(chunk, cols: dict, index, weights: dict, stats: dict, unknown_events: set) -> np.ndarray:
    """One chunk as RECORD rows of catalog items (unknown items and rows without session dropped)."""
    import pandas as pd

    stats["events"] += len(chunk)
    names, positions = index
    found = names.get_indexer(chunk[cols["item"]].astype("string").str.strip())
    item = np.append(positions, -1)[found]  # -1 (not found) picks the -1 appended
    session = chunk[cols["session"]].astype("string").str.strip()
    ok = (item >= 0) & session.notna().to_numpy(dtype=bool) & (session != "").fillna(False).to_numpy(dtype=bool)
    unknown = (item < 0) & chunk[cols["item"]].notna().to_numpy()
    stats["unknown_items"] += int(unknown.sum())
    if unknown.any() and "unknown_example" not in stats:
        stats["unknown_example"] = str(chunk[cols["item"]].to_numpy()[unknown][0])
    time = _seconds(chunk[cols["time"]]) if cols["time"] else np.zeros(len(chunk))
    if cols["time"]:
        bad = np.isnan(time) & ok
        stats["bad_rows"] += int(bad.sum())
        ok &= ~bad
    if cols["event"]:
        names = chunk[cols["event"]].astype("string").str.strip().str.lower().fillna("")
        w = names.map(weights).astype("float64")
        unknown_events.update(names[w.isna() & (names != "")].unique()[:20].tolist())
        w = w.fillna(1.0).to_numpy()
    else:
        w = np.ones(len(chunk))
    rec = np.empty(int(ok.sum()), RECORD)
    rec["session"] = pd.util.hash_array(session[ok].to_numpy(dtype=object))
    rec["item"], rec["weight"], rec["time"] = item[ok], w[ok], time[ok]
    stats["kept"] += len(rec)
    return rec


def _pairs(folder: Path, parts: int, n: int, session_gap: float | None):
    """The sparse relevance matrix from the partition files, one partition at a time."""
    import pandas as pd

    acc = _Accumulator(n)
    stats = {"sessions": 0, "long_sessions": 0, "pairs": 0}
    for p in range(parts):
        files = sorted(folder.glob(f"{p}-*.npy"))
        if not files:
            continue
        rec = np.concatenate([np.load(f) for f in files])
        for f in files:
            f.unlink()
        df = pd.DataFrame({"s": rec["session"], "i": rec["item"], "w": rec["weight"], "t": rec["time"]})
        del rec
        if session_gap is not None:  # a user's events split into visits by the gap
            df = df.sort_values(["s", "t"], kind="stable")
            gap = df["t"].diff().to_numpy() > session_gap * 60
            new = np.r_[True, (df["s"].to_numpy()[1:] != df["s"].to_numpy()[:-1]) | gap[1:]]
            df["s"] = np.cumsum(new)
        g = df.groupby(["s", "i"], sort=True)["w"].max().reset_index()
        sess = g["s"].to_numpy()
        starts = np.flatnonzero(np.r_[True, sess[1:] != sess[:-1]])
        sizes = np.diff(np.r_[starts, len(sess)])
        stats["sessions"] += len(sizes)
        long = sizes > MAX_SESSION_ITEMS
        stats["long_sessions"] += int(long.sum())
        keep = ~long & (sizes > 1)
        items, w = g["i"].to_numpy(np.int64), g["w"].to_numpy(np.float32)
        for a, b in _session_pairs(starts[keep], sizes[keep]):
            stats["pairs"] += len(a)
            acc.add(items[a].astype(np.int32), items[b].astype(np.int32), w[b])
    return acc.matrix(), stats


class _Accumulator:
    """Sparse sums of (row, column, value) triples, added in batches: the triples are buffered and
    merged into the total once they outnumber half of it (or PAIR_BATCH), so memory stays within about
    2.5 times the total and the merges cost about as much as the triples they absorb."""

    def __init__(self, n: int):
        from scipy import sparse

        self.n, self.total, self.parts, self.buffered = n, sparse.csr_matrix((n, n), dtype=np.float32), [], 0

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        self.parts.append((rows, cols, vals))
        self.buffered += len(rows)
        if self.buffered >= max(PAIR_BATCH, self.total.nnz // 2):
            self._merge()

    def _merge(self) -> None:
        from scipy import sparse

        if self.parts:
            r, c, v = (np.concatenate(x) for x in zip(*self.parts))
            self.parts, self.buffered = [], 0
            self.total = self.total + sparse.csr_matrix((v, (r, c)), shape=(self.n, self.n), dtype=np.float32)

    def matrix(self):
        self._merge()
        return self.total


def _session_pairs(starts: np.ndarray, sizes: np.ndarray):
    """Row indices (a, b) of every ordered pair of different rows within each session (rows
    ``starts[g]`` .. ``starts[g] + sizes[g] - 1``), in batches of at most about PAIR_BATCH pairs."""
    cost = np.cumsum(sizes.astype(np.int64) ** 2)
    lo = 0
    while lo < len(sizes):
        hi = max(lo + 1, int(np.searchsorted(cost, (cost[lo - 1] if lo else 0) + PAIR_BATCH, side="right")))
        st, m = starts[lo:hi], sizes[lo:hi].astype(np.int64)
        row_start = np.repeat(st, m)
        rows = row_start + np.arange(m.sum()) - np.repeat(np.r_[0, np.cumsum(m)[:-1]], m)
        per_row = np.repeat(m, m)  # partners of each row: its session's size
        a = np.repeat(rows, per_row)
        b = np.repeat(row_start, per_row) + np.arange(per_row.sum()) - np.repeat(np.r_[0, np.cumsum(per_row)[:-1]], per_row)
        keep = a != b
        yield a[keep], b[keep]
        lo = hi


def _cold(events: np.ndarray, first: np.ndarray, cold_events: int) -> np.ndarray:
    cold = (events > 0) & (events < cold_events)
    seen = first[~np.isnan(first)]
    if len(seen):
        t0, t1 = seen.min(), seen.max()
        cold |= ~np.isnan(first) & (first >= t0 + (1 - LATE_SHARE) * (t1 - t0)) & (t1 > t0)
    return cold


def _notes(rel: Relevance, cols, weights, session_gap, cold_events, unknown_events) -> None:
    s = rel.stats
    what = f"visits of {cols['session']} split after {session_gap:g} minutes without an event" if session_gap else \
        f"sessions = {cols['session']}"
    rel.notes.append(f"interactions: {s['kept']:,} of {s['events']:,} events on evaluated items, {s['sessions']:,} "
                     f"sessions ({what}), {s['pairs']:,} co-occurring pairs")
    if s["unknown_items"]:
        rel.notes.append(f"interactions: {s['unknown_items']:,} events name items the evaluated catalog does not hold "
                         "and are left out")
    if s["bad_rows"]:
        rel.notes.append(f"interactions: {s['bad_rows']:,} events have an unreadable {cols['time']} and are left out")
    if s["long_sessions"]:
        rel.notes.append(f"interactions: {s['long_sessions']:,} sessions with more than {MAX_SESSION_ITEMS} distinct "
                         "items (crawlers?) are left out")
    if cols["event"]:
        used = ", ".join(f"{k} {v:g}" for k, v in weights.items())
        rel.notes.append(f"interactions: event weights {used}" + (
            f"; other events ({', '.join(sorted(unknown_events)[:5])}) weigh 1" if unknown_events else ""))
    else:
        rel.notes.append("interactions: no event column, every event weighs 1")
    late = f", or first seen in the last {LATE_SHARE:.0%} of the log's time span" if cols["time"] else ""
    rel.notes.append(f"interactions cold-start slice: {int(rel.cold.sum()):,} items with fewer than {cold_events} "
                     f"events{late}")


# --- scoring a model's lists ----------------------------------------------------------------------

def score_lists(rel: Relevance, neighbours: np.ndarray, ks: Sequence[int]) -> dict[tuple[str, int | None], np.ndarray]:
    """Per metric and k, the value for every query item (rows with any relevant item), in row order:
    {("ndcg", k): ..., ("hit", k): ..., ("mrr", None): ...}; plus ("queries", None): their rows.
    Rows are scored in blocks of about PAIR_BATCH stored pairs, so scoring adds little to the matrix."""
    m = rel.matrix.tocsr()
    m.sort_indices()
    nnz_before = m.indptr
    bounds = [0]
    while bounds[-1] < m.shape[0]:
        stop = int(np.searchsorted(nnz_before, nnz_before[bounds[-1]] + PAIR_BATCH, side="right")) - 1
        bounds.append(min(m.shape[0], max(stop, bounds[-1] + 1)))
    parts = [_score_block(m[a:b], np.asarray(neighbours)[a:b], ks, a) for a, b in zip(bounds, bounds[1:])]
    if not parts:
        parts = [_score_block(m, np.asarray(neighbours), ks, 0)]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _score_block(m, nb: np.ndarray, ks: Sequence[int], offset: int) -> dict:
    """score_lists on rows ``offset`` .. of the block ``m`` (a row slice of the relevance matrix)."""
    rows, n = m.shape
    local = np.flatnonzero(np.diff(m.indptr) > 0)
    nb = nb[local]
    kmax = nb.shape[1]
    row_of_nnz = np.repeat(np.arange(rows, dtype=np.int64), np.diff(m.indptr))
    keys = row_of_nnz * n + m.indices
    q = local[:, None].astype(np.int64) * n + np.maximum(nb, 0)
    at = np.minimum(np.searchsorted(keys, q), max(len(keys) - 1, 0))
    gains = np.where((nb >= 0) & (len(keys) > 0) & (keys[at] == q), m.data[at], 0.0) if len(keys) else \
        np.zeros(nb.shape)
    disc = 1.0 / np.log2(np.arange(2, kmax + 2))
    ideal = _ideal_dcg(m, row_of_nnz, max(ks))[local]
    out: dict = {("queries", None): local + offset}
    for k in ks:
        kk = min(k, kmax)
        dcg = (gains[:, :kk] * disc[:kk]).sum(1)
        best = ideal[:, k - 1]
        out[("ndcg", k)] = np.where(best > 0, dcg / np.maximum(best, 1e-12), 0.0)
        out[("hit", k)] = (gains[:, :kk] > 0).any(1).astype(np.float64)
    hit = gains > 0
    out[("mrr", None)] = np.where(hit.any(1), 1.0 / (hit.argmax(1) + 1), 0.0)
    return out


def _ideal_dcg(m, row_of_nnz: np.ndarray, kmax: int) -> np.ndarray:
    """[n, kmax]: the ideal DCG@k of each row (its kmax largest gains, best first), k = 1..kmax."""
    n = m.shape[0]
    order = np.lexsort((-m.data, row_of_nnz))
    rank = np.arange(len(order)) - m.indptr[row_of_nnz[order]]
    keep = rank < kmax
    g = np.zeros((n, kmax))
    g[row_of_nnz[order][keep], rank[keep]] = m.data[order][keep]
    return np.cumsum(g / np.log2(np.arange(2, kmax + 2)), axis=1)


def interaction_eval(ev, model: str, neighbours: np.ndarray, rel: Relevance, ks: Sequence[int], n_boot: int,
                     seed: int, per_query: dict) -> None:
    """Append model ``model``'s interaction metrics (overall and cold-start) to ``ev.metrics``."""
    scores = score_lists(rel, neighbours, ks)
    queries = scores.pop(("queries", None))
    slices = {"all": np.ones(len(queries), bool), "cold-start": rel.cold[queries]}
    for name, mask in slices.items():
        for (metric, k), v in scores.items():
            v = v[mask]
            ev.metrics.append(Metric("interactions", name, metric, k, model, float(v.mean()) if len(v) else float("nan"),
                                     bootstrap_ci(v, n_boot, seed), len(v), v))
            per_query[("interactions", name, metric, k, model)] = v
    if not len(queries):
        ev.notes.append("no interaction figure: no evaluated item co-occurs with another in any session")
