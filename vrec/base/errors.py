"""Typed errors for mistakes a user can fix.

Every error here carries one sentence saying what went wrong and what to do next. The CLI
prints it as ``Error: ...`` with exit status 1 and no traceback; anything else is a bug and
keeps its traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class VrecError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""


class UnknownModel(VrecError):
    """A model name that the registry does not know."""


class ModelUnavailable(VrecError):
    """Weights that cannot be found locally nor downloaded."""


class StoreError(VrecError):
    """A store that is missing, damaged, or of an unsupported version."""


class ConfigMismatch(StoreError):
    """Vectors in the store were made with another configuration of the same model name."""


class NotEmbedded(StoreError):
    """A model that has no vectors in the store yet."""


class StaleIndex(StoreError):
    """An index built for other vectors than the store holds now."""


class CatalogError(VrecError):
    """A folder or metadata file that cannot be used as a catalog."""


class QueryError(VrecError):
    """A search or compare query that cannot be answered as asked."""


class UnknownItem(QueryError):
    """An item id that is not in the store."""


class FilterError(QueryError):
    """A --filter expression that cannot be parsed or names an unknown column."""


class CollectionError(VrecError):
    """A curated collection that cannot be named, found or saved as asked."""


class UnknownCollection(CollectionError):
    """A collection name that the store does not hold."""


class CollectionConflict(CollectionError):
    """A collection saved by someone else since it was loaded (or created twice): saving would lose their edits."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' Did you mean ...?' for the closest choices, or '' when none is close."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    if not close:  # 'TINY-SIGLIP' for 'tiny-siglip': the same name in another case
        close = [c for c in choices if c.lower() == str(name).lower()][:n]
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def check_number(name: str, value, *, min: float | None = None, max: float | None = None,
                 integer: bool = False, hint: str = "") -> None:
    """Refuse a numeric option outside its range (and NaN or infinity) with one clear sentence.

    Every numeric value a user types goes through here before it reaches numpy or native code
    (hnswlib segfaults on M=0), so the CLI and the web app refuse bad input the same way.
    ``min``/``max`` are inclusive; ``hint`` is appended (e.g. "e.g. 16").
    """
    import math

    try:
        f = float(value)
    except (TypeError, ValueError):
        raise VrecError(f"{name} must be a number (not {value!r}).") from None
    except OverflowError:  # an integer beyond any float
        raise VrecError(f"{name} must be a finite number (not one of {len(str(value))} digits).") from None
    if math.isnan(f) or math.isinf(f):
        raise VrecError(f"{name} must be a finite number (not {value!r}).")
    if integer and f != int(f):
        raise VrecError(f"{name} must be a whole number (not {value!r}).")
    if (min is not None and f < min) or (max is not None and f > max):
        fmt = (lambda x: str(int(x)) if float(x).is_integer() else str(x))
        if min is not None and max is not None:
            rng = f"between {fmt(min)} and {fmt(max)}"
        elif min is not None:
            rng = f"at least {fmt(min)}"
        else:
            rng = f"at most {fmt(max)}"
        raise VrecError(f"{name} must be {rng} (not {value!r})" + (f"; {hint}" if hint else "") + ".")
