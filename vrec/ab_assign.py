"""A/B assignment: which arm each unit (user or session) is in, the same answer everywhere.

A unit's arm is a salted hash -- sha256 of experiment name and unit id, cut at the ``--split``
shares -- not a random draw, so ``vrec ab assign``, ``vrec serve --experiment`` and any other
process or machine agree without sharing state, and one unit lands independently in different
experiments. The parsers of ``--arms`` and ``--split`` and the reader of the units and events
tables live here too: planning, serving and analysis all take arms and tables the same way.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import VrecError, check_number, suggest

DEFAULT_ARMS = ("cnn", "siglip")
MAX_ARMS = 10


def parse_arms(arms: str | Sequence[str] | None) -> list[str]:
    """Arm names from 'cnn,siglip' (or a list); two to ten distinct names."""
    if arms is None:
        names = list(DEFAULT_ARMS)
    elif isinstance(arms, str):
        names = [a.strip() for a in arms.split(",") if a.strip()]
    else:
        names = [str(a).strip() for a in arms if str(a).strip()]
    if len(names) < 2:
        raise VrecError(f"An experiment needs at least two arms, e.g. --arms cnn,siglip (got {arms!r}).")
    if len(names) > MAX_ARMS:
        raise VrecError(f"At most {MAX_ARMS} arms (got {len(names)}).")
    dup = sorted({a for a in names if names.count(a) > 1})
    if dup:
        raise VrecError(f"Arm {dup[0]!r} is named twice in --arms; give each arm once.")
    return names


def parse_split(split: str | Sequence[float] | None, n_arms: int) -> list[float]:
    """Shares per arm from '50/50', '34/33/33' or '1/1/1' (normalised to sum to 1); None: equal."""
    if split is None or (isinstance(split, str) and not split.strip()):
        return [1.0 / n_arms] * n_arms
    parts = split.split("/") if isinstance(split, str) else list(split)
    try:
        weights = [float(str(x).strip().rstrip("%")) for x in parts]
    except ValueError:
        raise VrecError(f"--split takes shares separated by '/', e.g. 50/50 or 34/33/33 (not {split!r}).") from None
    if len(weights) != n_arms:
        raise VrecError(f"--split {split!r} gives {len(weights)} shares for {n_arms} arms; give one share per arm, "
                        f"e.g. {'/'.join(['50'] * 2) if n_arms == 2 else '/'.join(['1'] * n_arms)}.")
    for w in weights:
        check_number("each --split share", w, min=0)
    total = sum(weights)
    if total <= 0 or sum(w > 0 for w in weights) < 2:
        raise VrecError(f"--split {split!r} must give at least two arms a share above 0.")
    return [w / total for w in weights]


def bucket(unit, experiment: str) -> float:
    """The unit's position in [0, 1) for this experiment: sha256 of 'experiment' + NUL + 'unit'.

    The experiment name is the salt, so one unit lands independently in different experiments;
    the hash is the same in every process and on every machine (unlike Python's ``hash``).
    """
    digest = hashlib.sha256(f"{experiment}\x00{unit}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def check_experiment(experiment: str) -> str:
    """The experiment's name, stripped; an empty one is refused, since the name salts every unit's hash."""
    if not isinstance(experiment, str) or not experiment.strip():
        raise VrecError("Give the experiment a name (--experiment NAME), e.g. --experiment similar-items-2025-06; "
                        "the name salts the assignment.")
    return experiment.strip()


def assign(unit, experiment: str, arms: Sequence[str] | str | None = None, split=None) -> str:
    """The arm of one unit (user or session id) in an experiment. Deterministic and stable."""
    return str(assign_many([unit], experiment, arms, split)[0])


def assign_many(units: Iterable, experiment: str, arms: Sequence[str] | str | None = None, split=None) -> np.ndarray:
    """Arms of many units at once (see :func:`assign`)."""
    experiment = check_experiment(experiment)
    names = parse_arms(arms)
    weights = parse_split(split, len(names))
    edges = np.cumsum(weights)[:-1]
    b = np.fromiter((bucket(u, experiment) for u in units), dtype=np.float64)
    return np.asarray(names, dtype=object)[np.searchsorted(edges, b, side="right")]


def read_table(path: str | os.PathLike, what: str = "file"):
    """A CSV or parquet file as a DataFrame (ids kept as text), with one clear error when it cannot be read."""
    import pandas as pd

    from .userfiles import buffer

    p = Path(path)
    data = buffer(p, what, "table", "give a CSV or parquet file")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(data)
        else:
            df = pd.read_csv(data, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise VrecError(f"{what} {str(path)!r} is empty; it needs a header row and one row per unit.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VrecError(f"Cannot read {what} {str(path)!r} ({reason}); give a UTF-8 CSV or a parquet file.") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def require_column(df, name: str, what: str) -> None:
    """Refuse a missing column in one clear error: the file's columns and the nearest name."""
    if name not in df.columns:
        raise VrecError(f"No column {name!r} for {what}; the file has {', '.join(map(repr, df.columns[:12]))}"
                        f"{' ...' if len(df.columns) > 12 else ''}.{suggest(name, map(str, df.columns))}")


def assign_file(path: str | os.PathLike, experiment: str, arms=None, split=None, unit: str | None = None):
    """A table of units (CSV/parquet; column ``unit``, else the first column) with each unit's arm.

    Returns (DataFrame unit, arm; counts per arm as a dict)."""
    import pandas as pd

    df = read_table(path, "units file")
    if not len(df.columns):
        raise VrecError(f"Units file {str(path)!r} has no columns; give one unit id per row under a header.")
    col = unit or ("unit" if "unit" in df.columns else df.columns[0])
    require_column(df, col, "--unit")
    units = df[col].astype(str).str.strip()
    if not len(units):
        raise VrecError(f"Units file {str(path)!r} has no rows; give one unit id per row.")
    if (units == "").any():
        raise VrecError(f"Units file {str(path)!r} has {int((units == '').sum())} empty unit id(s) in column "
                        f"{col!r}; fill or remove those rows.")
    names = parse_arms(arms)
    out = pd.DataFrame({col: units, "arm": assign_many(units, experiment, names, split)})
    counts = {a: int((out["arm"] == a).sum()) for a in names}
    return out, counts
