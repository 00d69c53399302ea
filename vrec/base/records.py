"""Plain, JSON-ready data from vrec's tables and results.

Reports, exports, the CLI's ``--format json`` and the web API all hand data to JSON; this module
is the one place that turns pandas tables and numpy values into plain Python (NaN and infinities
become ``null``, which strict JSON requires). It imports nothing of vrec, so any module can use
it without an import circle.
"""
from __future__ import annotations

import json
import math

import numpy as np


def to_records(table) -> list[dict]:
    """JSON-ready rows of a DataFrame: numpy scalars become Python numbers, missing values None."""
    return json.loads(table.to_json(orient="records"))


def json_safe(obj):
    """``obj`` with NaN and infinities as None (JSON's null) and numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
