"""Zero-shot tags from vocabularies, and the assortment gaps they reveal.

Because SigLIP embeds text and photos in one space, a catalog can be tagged by style, occasion,
material and pattern without anyone tagging it. Each (photo, concept) pair gets SigLIP's own match
probability, sigmoid(logit_scale * cosine + logit_bias): SigLIP was trained on exactly this
per-pair sigmoid, so the probability of one tag does not depend on which other tags are in the
vocabulary (a softmax across labels would force every photo to pick one winner).

Vocabulary files hold one concept per line; a line ``group:`` starts a group (``style:``,
``occasion:``, ...), and ``group: concept`` puts one concept in a group; ``#`` starts a comment.
A comma separates concepts (``material: leather, denim`` is two concepts): tags are listed
comma-separated everywhere (the table, ``--csv``, ``--filter tag:NAME``), so a concept name never
holds a comma.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from vrec.base.errors import CatalogError, StoreError, check_number, suggest
from vrec.base.files import STDOUT_REFUSED
from vrec.base.userfiles import describe, read_text
from vrec.search.query import load_encoder
from vrec.store.store import as_store, write_parquet

BUILTIN_VOCABS = ("fashion", "home")
# Prompt ensembling: each concept's text vector is the mean of these (re-normalised).
TEMPLATES = ("a photo of {}.", "a product photo of {}.", "{}")
DEFAULT_THRESHOLD = 0.1
DEFAULT_TOP = 2


@dataclass(frozen=True)
class Concept:
    name: str
    group: str


def read_vocab(source: str | os.PathLike) -> list[Concept]:
    """Concepts from a vocabulary file, or a built-in vocabulary by name (fashion, home)."""
    if str(source) in BUILTIN_VOCABS:
        text = resources.files("vrec.search").joinpath(f"vocab/{source}.txt").read_text(encoding="utf-8")
    else:
        path = Path(source)
        if not os.path.lexists(path):  # perhaps a mistyped built-in name: 'fashon'
            raise CatalogError(
                f"Vocabulary {str(source)!r} is neither a file nor a built-in vocabulary "
                f"({', '.join(BUILTIN_VOCABS)}).{suggest(str(source), BUILTIN_VOCABS)}")
        text = read_text(path, "Vocabulary", "vocabulary", "give a text file with one concept per line (UTF-8)",
                         CatalogError)
    concepts, group = [], "tag"
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.endswith(":"):
            group = line[:-1].strip().lower() or "tag"
            continue
        g, sep, name = line.partition(":")
        line_group, names = (g.strip().lower(), name) if sep and name.strip() else (group, line)
        concepts += [Concept(n.strip(), line_group) for n in names.split(",") if n.strip()]
    seen, out = set(), []
    for c in concepts:
        if (c.group, c.name.lower()) not in seen:
            seen.add((c.group, c.name.lower()))
            out.append(c)
    if not out:
        raise CatalogError(f"Vocabulary {str(source)!r} holds no concepts.")
    return out


def read_vocabs(sources: Sequence[str | os.PathLike] = ()) -> list[Concept]:
    concepts: list[Concept] = []
    for s in sources or ("fashion",):
        concepts += read_vocab(s)
    return concepts


def concept_vectors(enc, concepts: Sequence[Concept], templates: Sequence[str] = TEMPLATES) -> np.ndarray:
    """One unit vector per concept: the mean of its prompt templates' text vectors."""
    texts = [t.replace("{}", c.name) for c in concepts for t in templates]
    v = enc.encode_texts(texts).reshape(len(concepts), len(templates), -1).mean(1)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def match_probability(cos: np.ndarray, enc) -> np.ndarray:
    """SigLIP's sigmoid match probability; a plain rescaling of the cosine for models without a bias."""
    scale = enc.logit_scale or 1.0
    bias = enc.logit_bias if enc.logit_bias is not None else 0.0
    return 1.0 / (1.0 + np.exp(-(scale * cos.astype(np.float64) + bias)))


def _text_encoder(ms, encoder, device):
    from vrec.models.encoder_base import no_text_tower
    from vrec.models.registry import resolve

    if encoder is not None:
        return encoder
    try:
        has_text = resolve(ms.name).text
    except Exception:
        has_text = False
    if not has_text:
        raise no_text_tower(ms.name)
    return load_encoder(ms, device=device, text_only=True)


def probabilities(ms, enc, concepts: Sequence[Concept], batch: int = 8192) -> np.ndarray:
    """Items x concepts match probabilities, in store order, computed shard by shard."""
    cv = concept_vectors(enc, concepts)
    parts = [match_probability(np.asarray(v, np.float32) @ cv.T, enc) for _, v in ms.iter_live()]
    return np.concatenate(parts) if parts else np.zeros((0, len(concepts)))


def _catalog_probabilities(model, store, vocab, encoder, device):
    """(store, concepts, items x concepts probabilities, item ids) for a model's catalog."""
    st = as_store(store)
    ms = st.model(model)
    concepts = read_vocabs(vocab)
    probs = probabilities(ms, _text_encoder(ms, encoder, device), concepts)
    return st, concepts, probs, ms.items()["id"].to_numpy()


@dataclass
class TagResult:
    """Per item: its tags (best first) and their probabilities; ``long`` has one row per (item, tag)."""

    table: object  # DataFrame: id, tags (comma-separated), tag_probabilities
    long: object  # DataFrame: id, group, tag, probability
    concepts: list[Concept] = field(default_factory=list)
    threshold: float = DEFAULT_THRESHOLD
    top: int = DEFAULT_TOP


def tag(model: str = "siglip", store=None, vocab: Sequence[str | os.PathLike] = (), threshold: float = DEFAULT_THRESHOLD,
        top: int = DEFAULT_TOP, save: bool = True, encoder=None, device: str = "auto") -> TagResult:
    """Zero-shot, multi-label tags for every item: in each vocabulary group, the concepts whose
    match probability reaches ``threshold``, at most ``top`` of them, best first.

    With ``save``, tags are kept in the store (``tags.parquet``), so that ``--filter tag:NAME``
    works and search and compare show them.
    """
    import pandas as pd

    check_number("--threshold", threshold, min=0, max=1, hint="it is a match probability, e.g. 0.1")
    check_number("--top", top, min=1, integer=True, hint="tags per vocabulary group and item, e.g. 2")
    top = int(top)
    st, concepts, probs, ids = _catalog_probabilities(model, store, vocab, encoder, device)
    groups = sorted({c.group for c in concepts}, key=[c.group for c in concepts].index)
    rows = []
    for g in groups:
        cols = np.array([i for i, c in enumerate(concepts) if c.group == g])
        p = probs[:, cols]
        order = np.argsort(-p, axis=1)[:, :top]
        for item, (ranked, pr) in enumerate(zip(order, p)):
            for j in ranked:
                if pr[j] >= threshold:
                    rows.append((ids[item], g, concepts[cols[j]].name, float(pr[j])))
    long = pd.DataFrame(rows, columns=["id", "group", "tag", "probability"])
    long = long.sort_values(["id", "probability"], ascending=[True, False], kind="stable").reset_index(drop=True)
    agg = long.groupby("id", sort=False).agg(tags=("tag", ", ".join),
                                             tag_probabilities=("probability", lambda s: ", ".join(f"{x:.2f}" for x in s)))
    table = pd.DataFrame({"id": ids}).join(agg, on="id").fillna({"tags": "", "tag_probabilities": ""})
    if save:
        save_tags(st, long)
    return TagResult(table, long, list(concepts), threshold, top)


def save_tags(store, long) -> None:
    """Keep tags (``TagResult.long``) in the store, for ``--filter tag:NAME``, search and compare."""
    write_parquet(as_store(store).path / "tags.parquet", long)


def check_output_file(path: str | os.PathLike, option: str) -> None:
    """Refuse an output path that cannot become a file (a folder, a device, a file where a folder
    should be, a read-only place) before any work is done, so that nothing is written on failure."""
    if str(path) == "-":
        raise StoreError(f"{option} -: " + STDOUT_REFUSED)
    p = Path(path)
    if p.is_dir():
        raise StoreError(f"{option} {str(p)!r} is a folder; give a file name to write to (e.g. {str(p / 'out')!r}).")
    if p.exists() and not p.is_file():
        raise StoreError(f"{option} {str(p)!r} {describe(p)}; give the name of a file to write to.")
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise StoreError(f"Cannot write {option} {str(p)!r}: {str(parent)!r} is a file, not a folder; "
                         f"choose a writable location.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"Cannot write {option} {str(p)!r}: {str(parent)!r} is not writable; "
                         f"choose a writable location.")


def check_gap_options(threshold: float, min_items: int) -> None:
    """The range checks of :func:`gaps`' numbers, usable before any work is done."""
    check_number("--threshold", threshold, min=0, max=1, hint="it is a match probability, e.g. 0.1")
    check_number("--min-items", min_items, min=1, integer=True, hint="e.g. 3")


@dataclass
class Gap:
    group: str
    concept: str
    best_probability: float
    items_above: int
    closest: list[str]  # ids of the closest items


def gaps(model: str = "siglip", store=None, vocab: Sequence[str | os.PathLike] = (), threshold: float = DEFAULT_THRESHOLD,
         min_items: int = 3, encoder=None, device: str = "auto") -> tuple[list[Gap], list[Gap]]:
    """Assortment gaps and over-served concepts.

    A gap is a concept that fewer than ``min_items`` items match with probability ``threshold``
    or more (its best item may still be a weak match). Over-served concepts are the ones matched
    by the largest share of the catalog. Returns (gaps, over_served), each sorted by items above.
    """
    check_gap_options(threshold, min_items)
    _, concepts, probs, ids = _catalog_probabilities(model, store, vocab, encoder, device)
    out = []
    for j, c in enumerate(concepts):
        p = probs[:, j]
        closest = [str(ids[i]) for i in np.argsort(-p)[:3]]
        out.append(Gap(c.group, c.name, float(p.max()) if len(p) else 0.0, int((p >= threshold).sum()), closest))
    gap_list = sorted([g for g in out if g.items_above < min_items], key=lambda g: (g.items_above, g.best_probability))
    served = sorted([g for g in out if g.items_above >= min_items], key=lambda g: -g.items_above)
    n = max(len(ids), 1)
    over = [g for g in served if g.items_above / n >= 0.25][:10] or served[:5]
    return gap_list, over


def gaps_frame(gap_list: Sequence[Gap], over: Sequence[Gap]):
    """Gaps and over-served concepts as one table (``kind`` says which), e.g. for ``--csv``."""
    import pandas as pd

    rows = [(kind, g.group, g.concept, g.items_above, round(g.best_probability, 4), ", ".join(g.closest))
            for kind, gs in (("gap", gap_list), ("over-served", over)) for g in gs]
    return pd.DataFrame(rows, columns=["kind", "group", "concept", "items_above", "best_probability", "closest"])
