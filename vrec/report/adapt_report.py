"""How ``vrec adapt``'s report and a store's adapted models are shown (terminal tables and JSON)."""
from __future__ import annotations

import json

from vrec.base.records import json_safe
from vrec.report.render import figure, new_table


def adapt_table(rep):
    """One row per label: held-out precision@k of the base and the adapted vectors, and the paired gain."""
    k = rep.k
    t = new_table(f"{rep.name}: held-out precision@{k}, base {rep.model} vs adapted "
                  f"({rep.train_items} training items, {rep.test_items} held out; rank {rep.rank}, alpha {rep.alpha:g})",
                  caption=_caption(rep))
    for c in ("label", "queries", f"base P@{k}", f"adapted P@{k}", "gain", "gain 95% interval", "verdict"):
        t.add_column(c, justify="left" if c in ("label", "verdict") else "right", whole=c != "verdict")
    for r in rep.rows:
        gain, ci = figure(r["difference"], *r["ci"], signed=True)
        t.add_row(r["label"], str(r["queries"]), figure(r["base"], None, None)[0], figure(r["adapted"], None, None)[0],
                  gain, ci, r["verdict"])
    return t


def _caption(rep) -> str:
    if rep.published and rep.forced:
        state = f"published as {rep.name} anyway (--force)"
    elif rep.published:
        state = f"published as {rep.name}"
    else:
        state = "not published"
    return f"Verdict: {rep.verdict}; {state}."


def adapt_json(rep) -> str:
    return json.dumps(json_safe(rep.to_dict()), indent=2)


def adapted_models_table(found: list[dict], store: str):
    """The derived models in a store, each with its base, alpha, rank, labels and held-out gains."""
    t = new_table(f"Adapted models in {store} (made by 'vrec adapt')")
    for c in ("name", "base", "items", "alpha", "rank", "trained on", "held-out gain", "trained", "state"):
        t.add_column(c, justify="right" if c in ("items", "alpha", "rank") else "left", whole=c in ("name", "base"))
    for m in found:
        gains = "; ".join(f"{r['label']} {figure(r.get('difference'), *(r.get('ci') or [None, None]), signed=True)[0]}"
                          f" ({figure(r.get('difference'), *(r.get('ci') or [None, None]), signed=True)[1]})"
                          for r in m.get("held_out", []))
        trained_on = ", ".join(m.get("labels", []) + (["pairs"] if m.get("pairs") else []))
        t.add_row(m["name"], str(m.get("base", "")), str(m.get("items", "")), f"{m.get('alpha', 0):g}",
                  str(m.get("rank", "")), trained_on, gains + (" (forced)" if m.get("forced") else ""),
                  str(m.get("trained", "")),
                  "fresh" if m.get("fresh") else "stale: the base model changed since; run vrec adapt again")
    return t
