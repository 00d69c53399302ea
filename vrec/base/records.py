"""Plain, JSON-ready data from vrec's tables and results.

Reports, exports, the CLI's ``--format json`` and the web API all hand data to JSON; this module
is the one place that turns pandas tables and numpy values into plain Python (NaN and infinities
become ``null``, which strict JSON requires). It imports nothing of vrec, so any module can use
it without an import circle.
"""
from __future__ import annotations

import json
import math
import re

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


# --- CSV cells ----------------------------------------------------------------------------------

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's CSV injection list):
# metadata such as '=HYPERLINK(...)' or '@SUM(...)' from a supplier's feed would run on opening.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_RAW_ENV = "VREC_CSV_RAW"  # set to 1: write every cell as it is
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value):
    """A text cell a spreadsheet would run as a formula, with a leading "'" (shown, never run);
    numbers, plain negative numbers written as text ('-0.5') and other cells as they are."""
    if isinstance(value, str) and value[:1] in FORMULA_START and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_safe(df):
    """The table as every CSV vrec writes it: text cells and column names a spreadsheet would run
    as formulas are escaped (see :func:`csv_cell`), unless VREC_CSV_RAW=1 asks for raw values.
    Numeric columns are never touched."""
    import os

    if os.environ.get(CSV_RAW_ENV, "").strip() not in ("", "0"):
        return df
    from pandas.api.types import is_object_dtype, is_string_dtype

    out = df.copy()
    for i, dtype in enumerate(df.dtypes):
        if is_object_dtype(dtype) or is_string_dtype(dtype):
            out.isetitem(i, df.iloc[:, i].map(csv_cell))
    out.columns = [csv_cell(c) for c in df.columns]
    return out
