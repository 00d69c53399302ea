"""A/B assignment: which arm each unit (user or session) is in, the same answer everywhere.

A unit's arm is a salted hash -- sha256 of experiment name and unit id, cut at the ``--split``
shares -- not a random draw, so ``vrec ab assign``, ``vrec serve --experiment`` and any other
process or machine agree without sharing state, and one unit lands independently in different
experiments. The parsers of ``--arms`` and ``--split`` and the reader of the units and events
tables live here too: planning, serving and analysis all take arms and tables the same way.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vrec.base.errors import VrecError, suggest

DEFAULT_ARMS = ("cnn", "siglip")
MAX_ARMS = 10
MIN_SHARE = 0.0001  # the smallest share of the units an arm may have (0.01%)


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


def _share(text, split) -> float:
    """One --split share as a number: finite and not below 0, or one clear error naming it."""
    raw = str(text).strip()
    try:
        w = float(raw.rstrip("%"))
    except ValueError:
        what = " has an empty share" if not raw else f": share {raw!r} is not a number"
        raise VrecError(f"--split {split!r}{what}; give shares separated by '/', e.g. 50/50 or "
                        f"34/33/33.") from None
    if not math.isfinite(w):
        raise VrecError(f"--split {split!r}: share {raw!r} is not a finite number; give shares such as 50/50.")
    if w < 0:
        raise VrecError(f"--split {split!r}: share {raw!r} is below 0; every arm's share is a positive number.")
    return w


def parse_split(split: str | Sequence[float] | None, n_arms: int) -> list[float]:
    """Shares per arm from '50/50', '34/33/33', '90%/10%' or '1/1/1', normalised to sum to 1; None: equal.

    The one parser of --split (ab assign, analyze and plan, vrec serve --experiment): every share
    must be a finite number above 0, the shares must add up to a finite number, and after
    normalising each arm keeps at least ``MIN_SHARE`` of the units."""
    if split is None or (isinstance(split, str) and not split.strip()):
        return [1.0 / n_arms] * n_arms
    text = split if isinstance(split, str) else "/".join(map(str, split))
    weights = [_share(x, text) for x in (split.split("/") if isinstance(split, str) else split)]
    if len(weights) != n_arms:
        raise VrecError(f"--split {text!r} gives {len(weights)} shares for {n_arms} arms; give one share per arm, "
                        f"e.g. {'/'.join(['50'] * 2) if n_arms == 2 else '/'.join(['1'] * n_arms)}.")
    zero = [i for i, w in enumerate(weights, 1) if w == 0]
    if zero:
        raise VrecError(f"--split {text!r} gives arm {zero[0]} no share; every arm needs a share above 0.")
    total = sum(weights)
    if not math.isfinite(total):
        raise VrecError(f"--split {text!r} adds up to more than a number can hold; give shares such as 50/50 or "
                        "34/33/33.")
    shares = [w / total for w in weights]
    small = [i for i, s in enumerate(shares, 1) if s < MIN_SHARE]
    if small:
        raise VrecError(f"--split {text!r} gives arm {small[0]} {shares[small[0] - 1]:.2g} of the units, too small "
                        f"to serve or test; every arm needs at least {MIN_SHARE:.2%} of the units.")
    return shares


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (the same inode: links, symlinks and ./ spellings included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def refuse_overwrite(out: str | os.PathLike, inputs: dict[str, str | os.PathLike], option: str = "--out") -> None:
    """Refuse an output path that is one of the inputs ({what: path}), before any work is done."""
    for what, path in inputs.items():
        if same_file(out, path):
            raise VrecError(f"{option} {str(out)!r} is the {what} this command reads; writing it would replace "
                            "the input, so give another file name.")


def bucket(unit, experiment: str) -> float:
    """The unit's position in [0, 1) for this experiment: sha256 of 'experiment' + NUL + 'unit'.

    The experiment name is the salt, so one unit lands independently in different experiments;
    the hash is the same in every process and on every machine (unlike Python's ``hash``).
    """
    digest = hashlib.sha256(f"{experiment}\x00{unit}".encode()).digest()
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

    from vrec.base.userfiles import buffer

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

    names = parse_arms(arms)
    parse_split(split, len(names))  # options first: one clear error before a large file is read
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
    out = pd.DataFrame({col: units, "arm": assign_many(units, experiment, names, split)})
    counts = {a: int((out["arm"] == a).sum()) for a in names}
    return out, counts
