"""``vrec adapt``: a low-rank adapter learnt on a model's frozen vectors from the catalog's own labels.

Why: when ``vrec eval`` says a model groups the catalog otherwise than the brand does, a small
adapter on its vectors (no re-embedding, no GPU) can move items of one label value together.

What: ``y = unit(x + U Vᵀ x)`` (:mod:`vrec.models.adapter`), U = 0 at the start (the identity),
trained on the CPU with torch by a proxy loss (normalised softmax: one learnt proxy per label
value, cosine logits over a temperature) for every ``--label`` column and, with ``--pairs``, for
the groups of items that the positive pairs join.

Evidence: the items are split by product (seeded) into training and held-out items; the adapter
sees the training items only. Every held-out item with a label value shared by another held-out
item queries the other held-out items; precision@k of the label is measured for the base vectors
and the adapted ones, and a paired bootstrap over those queries gives the gain's 95% interval.
An adapter is published only when it is better: some label's interval is above zero and none is
below (``force`` publishes it anyway, and the report says so).

Publishing writes the derived model ``BASE+TAG`` into the store like any model (every item's
adapted vector through the store writer, an index when the base has one); the base model's vectors
are only read.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from vrec.base.errors import QueryError, check_number, suggest
from vrec.base.files import now
from vrec.experiments.metrics import paired_difference
from vrec.models.adapter import Adapter, split_derived, unit
from vrec.models.registry import check_model_name
from vrec.store.catalog_table import catalog_table
from vrec.store.store import ITEM_COLUMNS, as_store

DEFAULT_TAG = "adapt"
TEMPERATURE = 0.1  # of the proxy loss's cosine logits
EVAL_QUERIES = 5000  # held-out queries at most (a seeded sample beyond): the interval is narrow long before


@dataclass
class AdaptReport:
    """What ``adapt`` did: the split, the held-out comparison per label, and whether it published."""

    model: str
    name: str
    labels: list[str]
    pairs: str | None
    items: int
    train_items: int
    test_items: int
    rank: int
    alpha: float
    steps: int
    seed: int
    k: int
    rows: list[dict] = field(default_factory=list)  # per label: queries, base, adapted, difference, ci, verdict
    better: bool = False
    published: bool = False
    forced: bool = False
    verdict: str = ""
    final_loss: float = float("nan")
    seconds: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def adapt(model: str, labels: Sequence[str] = (), store=None, pairs: str | None = None, name: str | None = None,
          alpha: float = 0.5, rank: int = 32, steps: int = 300, holdout: float = 0.3, k: int = 10, seed: int = 0,
          n_boot: int = 1000, force: bool = False, progress: Callable[[str], None] | None = None) -> AdaptReport:
    """Learn an adapter on ``model``'s vectors from ``labels`` (and ``pairs``), measure it on held-out
    items, and publish it as the model ``name`` (default ``MODEL+adapt``) when it is better."""
    say = progress or (lambda _m: None)
    name = _checked(model, labels, pairs, name, alpha, rank, steps, holdout, k, n_boot)
    t0 = time.perf_counter()
    st = as_store(store)
    ms = st.model(model)
    table = catalog_table(st, ms)
    codes = [_codes(table, lab) for lab in labels]
    if pairs is not None:
        codes.append(_pair_codes(table, pairs))
    names = list(labels) + (["pairs"] if pairs is not None else [])
    x = unit(ms.vectors_for_rows(table["row"].to_numpy()))
    test = _split(table, holdout, seed)
    rep = AdaptReport(model, name, list(labels), pairs, len(table), int((~test).sum()), int(test.sum()), rank,
                      alpha, steps, seed, k)
    if min(rank, x.shape[1]) != rank:
        raise QueryError(f"--rank {rank} is above the model's dimension {x.shape[1]}; use a smaller --rank, e.g. 32.")
    rep.seconds["read"] = time.perf_counter() - t0
    say(f"training a rank-{rank} adapter on {rep.train_items} items ({steps} steps)")
    t1 = time.perf_counter()
    u, v, rep.final_loss = train_adapter(x[~test], [c[~test] for c in codes], rank, steps, seed)
    adapter = Adapter(u, v, alpha)
    rep.seconds["train"] = time.perf_counter() - t1
    say(f"measuring on {rep.test_items} held-out items")
    t2 = time.perf_counter()
    _evaluate(rep, names, x[test], adapter.apply(x[test]), [c[test] for c in codes], k, n_boot, seed)
    rep.seconds["evaluate"] = time.perf_counter() - t2
    rep.published, rep.forced = rep.better or force, force and not rep.better
    if rep.published:
        say(f"writing {name}: every item's adapted vector")
        t3 = time.perf_counter()
        publish(st, model, name, adapter, _summary(rep))
        rep.seconds["publish"] = time.perf_counter() - t3
    rep.seconds["total"] = time.perf_counter() - t0
    return rep


def _checked(model, labels, pairs, name, alpha, rank, steps, holdout, k, n_boot) -> str:
    """The derived model's name, after every option has been checked (before any work)."""
    check_model_name(model)
    if split_derived(model):
        raise QueryError(f"{model!r} is itself an adapter; adapt its base model instead: "
                         f"--model {split_derived(model)[0]}.")
    if not labels and pairs is None:
        raise QueryError("Nothing to learn from: give --label COLUMN (a metadata column, e.g. articleType) "
                         "or --pairs FILE (pairs of items that belong together).")
    check_number("--alpha", alpha, min=0, max=1, hint="the adapted text vector's weight against the base one")
    check_number("--rank", rank, min=1, max=1024, integer=True, hint="e.g. 32")
    check_number("--steps", steps, min=1, max=100_000, integer=True, hint="e.g. 300")
    check_number("--holdout", holdout, min=0.05, max=0.95, hint="the share of products kept for the evaluation")
    check_number("--k", k, min=1, max=1000, integer=True)
    check_number("--bootstrap", n_boot, min=100, max=100_000, integer=True)
    name = name or f"{model}+{DEFAULT_TAG}"
    if "+" not in name:
        name = f"{model}+{name}"
    check_model_name(name)
    if split_derived(name)[0] != model:
        raise QueryError(f"--name {name!r} names an adapter on {split_derived(name)[0]!r}, not on {model!r}; "
                         f"use --name {model}+{split_derived(name)[1]}.")
    return name


def _codes(table, column: str) -> np.ndarray:
    """Each item's label value as a code (-1: no value)."""
    import pandas as pd

    if column not in table.columns:
        raise QueryError(f"No column {column!r} in the metadata for --label.{suggest(column, map(str, table.columns))} "
                         f"Add labels with 'vrec embed FOLDER --metadata CSV'.")
    values = table[column].astype("string").fillna("").str.strip()
    codes, _ = pd.factorize(values.where(values != "", None), use_na_sentinel=True)
    return codes.astype(np.int64)


def _pair_codes(table, path: str) -> np.ndarray:
    """Items joined by positive pairs (a CSV of two id columns), as groups: one code per connected
    group of the pairs, -1 for items in no pair."""
    import pandas as pd
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from vrec.base.userfiles import buffer

    data = buffer(path, "--pairs", "table", "give a CSV of two item-id columns", QueryError)
    try:
        df = pd.read_csv(data, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as e:
        raise QueryError(f"--pairs {str(path)!r} is not a CSV of item ids ({e}).") from None
    if df.shape[1] < 2:
        raise QueryError(f"--pairs {path!r} needs two columns of item ids (one positive pair a line); it has "
                         f"{df.shape[1]}.")
    pos = {str(i): n for n, i in enumerate(table["id"].astype(str))}
    a = df.iloc[:, 0].str.strip().map(pos)
    b = df.iloc[:, 1].str.strip().map(pos)
    known = a.notna() & b.notna()
    if not known.any():
        raise QueryError(f"No pair in --pairs {path!r} names two items of the catalog; its first two columns "
                         f"should hold item ids as the search results show them.")
    a, b = a[known].astype(int).to_numpy(), b[known].astype(int).to_numpy()
    n = len(table)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    in_pair = np.zeros(n, bool)
    in_pair[a] = in_pair[b] = True
    return np.where(in_pair, comp, -1).astype(np.int64)


def _split(table, holdout: float, seed: int) -> np.ndarray:
    """Held-out items (True): a seeded share of the products, all photos of a product on one side."""
    import pandas as pd

    key = table["product"] if "product" in table.columns else table["id"]
    groups, uniq = pd.factorize(key.astype(str))
    order = np.random.default_rng(seed).permutation(len(uniq))
    held = order[: max(1, int(round(holdout * len(uniq))))]
    return np.isin(groups, held)


def train_adapter(x: np.ndarray, code_sets: Sequence[np.ndarray], rank: int, steps: int, seed: int,
                  batch: int = 512, lr: float = 3e-3) -> tuple[np.ndarray, np.ndarray, float]:
    """U, V (float32 [dim, rank]) and the last loss, by a proxy loss per label on unit outputs.

    On one torch thread: a step's matrices are small ([512, dim] by [dim, rank]), and on a busy
    machine two threads waiting on each other made a step 8x slower (bench/adapt.py)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(x, code_sets, rank, steps, seed, batch, lr)
    finally:
        torch.set_num_threads(threads)


def _train(x, code_sets, rank, steps, seed, batch, lr):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    d = xt.shape[1]
    u = torch.zeros(d, rank, requires_grad=True)
    v = (torch.randn(d, rank, generator=gen) / d ** 0.5).requires_grad_()
    codes = [torch.from_numpy(c) for c in code_sets]
    proxies = [_class_means(xt, c) for c in codes]
    labelled = torch.nonzero(torch.stack([c >= 0 for c in codes]).any(0)).flatten()
    if len(labelled) < 2:
        raise QueryError("Fewer than two training items have a label value; label more items, or lower --holdout.")
    opt = torch.optim.AdamW([u, v, *proxies], lr=lr, weight_decay=1e-4)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        idx = labelled[torch.randint(len(labelled), (min(batch, len(labelled)),), generator=gen)]
        xb = xt[idx]
        y = F.normalize(xb + (xb @ v) @ u.T, dim=1)
        loss = 0.0
        for c, p in zip(codes, proxies):
            cb = c[idx]
            keep = cb >= 0
            if keep.any():
                logits = y[keep] @ F.normalize(p, dim=1).T / TEMPERATURE
                loss = loss + F.cross_entropy(logits, cb[keep])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return u.detach().numpy().copy(), v.detach().numpy().copy(), float(loss.detach()) if torch.is_tensor(loss) else float("nan")


def _class_means(xt, codes):
    """One trainable proxy per label value, starting at the mean of its items (or a random unit
    vector for a value no training item has)."""
    import torch

    n = int(codes.max()) + 1 if len(codes) else 0
    means = torch.randn(max(n, 1), xt.shape[1]) * 1e-3
    keep = codes >= 0
    means.index_add_(0, codes[keep], xt[keep])
    return torch.nn.functional.normalize(means, dim=1).requires_grad_()


def precision_at(x: np.ndarray, codes: np.ndarray, queries: np.ndarray, k: int, batch: int = 1024) -> np.ndarray:
    """Precision@k of each query item's label among its k nearest other items of ``x`` (unit vectors)."""
    out = np.empty(len(queries))
    kk = min(k, len(x) - 1)
    for s in range(0, len(queries), batch):
        q = queries[s:s + batch]
        sims = x[q] @ x.T
        sims[np.arange(len(q)), q] = -np.inf  # not itself
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        out[s:s + batch] = (codes[top] == codes[q][:, None]).sum(1) / kk
    return out


def _evaluate(rep: AdaptReport, names, base, adapted, code_sets, k: int, n_boot: int, seed: int) -> None:
    """Paired precision@k, base vs adapted, on the held-out items, per label; sets the verdict."""
    rng = np.random.default_rng(seed)
    for label, codes in zip(names, code_sets):
        counts = np.bincount(codes[codes >= 0], minlength=1)
        queries = np.flatnonzero((codes >= 0) & (counts[np.maximum(codes, 0)] >= 2))
        if len(queries) > EVAL_QUERIES:
            queries = np.sort(rng.choice(queries, EVAL_QUERIES, replace=False))
            rep.notes.append(f"{label}: {EVAL_QUERIES} of the held-out items queried (a seeded sample)")
        if len(queries) < 2:
            rep.rows.append({"label": label, "queries": int(len(queries)), "base": None, "adapted": None,
                             "difference": None, "ci": [None, None], "verdict": "no held-out value twice"})
            continue
        b, a = precision_at(base, codes, queries, k), precision_at(adapted, codes, queries, k)
        diff = paired_difference(a, b, n_boot, seed)
        verdict = ("better" if diff["difference"] > 0 else "worse") if diff["excludes_zero"] else "no clear change"
        rep.rows.append({"label": label, "queries": int(len(queries)), "base": float(b.mean()),
                         "adapted": float(a.mean()), "difference": diff["difference"], "ci": diff["ci"],
                         "verdict": verdict})
    verdicts = [r["verdict"] for r in rep.rows]
    rep.better = "better" in verdicts and "worse" not in verdicts
    if rep.better:
        rep.verdict = (f"the adapter is better on held-out items: precision@{k} gains with a 95% interval above zero "
                       f"for {', '.join(r['label'] for r in rep.rows if r['verdict'] == 'better')}")
    elif "worse" in verdicts:
        rep.verdict = (f"the adapter is worse on held-out items for "
                       f"{', '.join(r['label'] for r in rep.rows if r['verdict'] == 'worse')}")
    else:
        rep.verdict = f"the adapter shows no clear gain on held-out items (every 95% interval of the precision@{k} gain holds zero)"


def _summary(rep: AdaptReport) -> dict:
    """What the derived model's manifest records of its training."""
    return {"labels": rep.labels, "pairs": rep.pairs, "rank": rep.rank, "alpha": rep.alpha, "steps": rep.steps,
            "seed": rep.seed, "k": rep.k, "train_items": rep.train_items, "test_items": rep.test_items,
            "held_out": rep.rows, "better": rep.better, "forced": rep.forced,
            "trained": now()}


def publish(st, model: str, name: str, adapter: Adapter, summary: dict) -> None:
    """Write ``name``: every live photo of ``model`` through the adapter, committed by the store writer
    (replacing an earlier adapter of that name), with the adapter's weights and an index where the
    base model has one. The base model is only read."""
    import shutil

    from vrec.store import index as ix
    from vrec.store.products import ProductStore, save_products
    from vrec.store.writer import ModelWriter

    src = st.photos(model)
    out = st.model_for_writing(name)
    old = out.config.get("adapter", {}).get("folder") if out.exists() else None
    folder = f"adapter-{(out.generation if out.exists() else 0) + 1:08d}"
    config = {**src.config, "name": name,
              "adapter": {"base": model, "base_generation": src.generation, "folder": folder, "alpha": adapter.alpha,
                          "rank": adapter.rank, **summary}}
    with ModelWriter(out, config) as w:
        adapter.save(out.path / folder)
        if out.exists():
            w.delete_rows(out.items()["row"].to_numpy())
        items = src.items()[ITEM_COLUMNS].reset_index(drop=True)
        w.add(items, adapter.apply(src.vectors()))
    out.refresh()
    if old and old != folder:
        shutil.rmtree(out.path / old, ignore_errors=True)
    index = bool(src.manifest().get("index"))
    if index or out.manifest().get("index"):
        ix.build_index(out)
    if out.manifest().get("products"):
        save_products(ProductStore(out), index=index)


def adapted_models(store=None) -> list[dict]:
    """The derived models in a store: name, base, alpha, rank, labels, their held-out gains, and
    ``fresh``: False once the base model has changed (embedded again) since: run adapt again."""
    st = as_store(store)
    if not st.exists():
        return []
    found = []
    for n in st.model_names():
        if split_derived(n):
            ms = st.model_for_writing(n)
            info = ms.config.get("adapter") or {}
            found.append({"name": n, "items": ms.live_count(), **info, "fresh": _fresh(st, info)})
    return found


def _fresh(st, info: dict) -> bool:
    """Whether the base model is as it was when the adapter was published (no embed since)."""
    base = st.model_for_writing(str(info.get("base", "")))
    return base.exists() and base.generation == info.get("base_generation")
