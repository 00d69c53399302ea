"""Write a SIMULATED interaction log with a known answer, for `vrec eval --interactions`.

Nothing here is real shopper behaviour. Shoppers browse a latent category structure: each session
picks a category (in proportion to its size), then views 2 to ~8 items, each from that category
with probability 1 - NOISE (0.9), else any item; some views are followed by an add to cart, some
carts by a purchase. Items within a category differ in popularity (a few are viewed far more), 10%
of the items are "new arrivals" that only appear in the last tenth of the period (the cold-start
slice), and the rows are shuffled, so sessions are not contiguous in the file.

The planted answer: items of one category co-occur, items of different categories only by noise.
So a model ranks higher on this log exactly when more of its neighbours share the query's category:
the ranking of models by interaction nDCG@k recovers their ranking by label agreement with the
category column (`vrec eval --label COLUMN`). Deterministic for a seed.

    python examples/simulate_interactions.py --store .vrec --label articleType --out sim-events.csv
    vrec eval --models effnet-lite0,tiny-siglip --interactions sim-events.csv --label articleType
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

NOISE = 0.1
DAYS = 28
NEW_SHARE = 0.1  # items that only appear in the last tenth of the period
CART, PURCHASE = 0.2, 0.3  # P(cart | view), P(purchase | cart)


def simulate(ids, categories, sessions: int = 3000, seed: int = 7, noise: float = NOISE,
             start: str = "2026-01-05") -> pd.DataFrame:
    """Events (session, user, item, event, timestamp) of ``sessions`` simulated shopping sessions."""
    rng = np.random.default_rng(seed)
    ids = np.asarray([str(i) for i in ids], dtype=object)
    cats = np.asarray([str(c) for c in categories], dtype=object)
    values, code = np.unique(cats, return_inverse=True)
    popularity = rng.pareto(1.5, len(ids)) + 1  # a few favourites in every category
    new = rng.random(len(ids)) < NEW_SHARE
    period = DAYS * 86400.0
    t0 = pd.Timestamp(start, tz="UTC").timestamp()
    rows = []
    for s in range(sessions):
        t = rng.random() * period
        live = ~new | (t >= (1 - NEW_SHARE) * period)
        c = rng.choice(len(values), p=np.bincount(code[live], minlength=len(values)) / live.sum())
        length = 2 + rng.poisson(2.5)
        for e in range(length):
            pool = live & (code == c) if rng.random() >= noise else live
            p = popularity * pool
            item = rng.choice(len(ids), p=p / p.sum())
            when = t + 40.0 * e
            rows.append((f"s{s:06d}", f"u{rng.integers(0, sessions // 3 + 1):06d}", ids[item], "view", when))
            if rng.random() < CART:
                rows.append((f"s{s:06d}", rows[-1][1], ids[item], "cart", when + 10))
                if rng.random() < PURCHASE:
                    rows.append((f"s{s:06d}", rows[-1][1], ids[item], "purchase", when + 20))
    df = pd.DataFrame(rows, columns=["session", "user", "item", "event", "timestamp"])
    df["timestamp"] = pd.to_datetime(df["timestamp"] + t0, unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # sessions not contiguous


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=".vrec", help="a vrec store (its items and metadata)")
    ap.add_argument("--model", default=None, help="model whose items to use [default: the store's first]")
    ap.add_argument("--label", required=True, help="the metadata column that is the latent category")
    ap.add_argument("--out", default="sim-events.csv")
    ap.add_argument("--sessions", type=int, default=3000, help="how many sessions (at least 1)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    if a.sessions < 1:
        ap.error(f"--sessions must be at least 1 (not {a.sessions})")
    if not Path(a.out).resolve().parent.is_dir():
        ap.error(f"--out {a.out!r}: its folder does not exist; create it or write elsewhere")
    from vrec.base.errors import VrecError, suggest
    from vrec.store.catalog_table import catalog_table
    from vrec.store.store import as_store

    try:
        st = as_store(a.store)
        st.info()
        names = st.model_names()
        if not names:
            ap.error(f"the store {a.store!r} holds no vectors yet; run 'vrec embed FOLDER' first")
        table = catalog_table(st, st.model(a.model or names[0]))
    except VrecError as e:
        ap.error(str(e))
    if a.label not in table.columns:
        own = {"id", "path", "hash", "size", "mtime", "width", "height", "product", "position", "row", "photos"}
        cols = [str(c) for c in table.columns if c not in own]
        ap.error(f"--label {a.label!r} is no metadata column.{suggest(a.label, cols)} The metadata has: "
                 f"{', '.join(cols) or 'no columns'}.")
    labels = table[a.label].astype("string").fillna("").to_numpy(dtype=object)
    simulate(table["id"], labels, a.sessions, a.seed).to_csv(a.out, index=False)
    print(f"wrote {a.out}: SIMULATED sessions browsing {a.label} (noise {NOISE:.0%}), seed {a.seed}")


if __name__ == "__main__":
    main()
