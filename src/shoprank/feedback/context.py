"""A served record's ``context``: the request's values of the shop's impression columns.

The service logs them as a JSON object per served record; ingestion reads them back into
the declared impression columns (``data.columns.impressions``), typed as declared.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from shoprank.data.schema import IMPRESSIONS, TableSchema


def _context(text: object) -> dict | None:
    if text is None or text is pd.NA or (isinstance(text, float) and np.isnan(text)):
        return {}
    try:
        value = json.loads(str(text))
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def context_readable(contexts: pd.Series) -> pd.Series:
    """Per record: its context is absent or a JSON object (read once per distinct text)."""
    bad = [text for text in contexts.dropna().unique() if _context(text) is None]
    return ~contexts.isin(bad)


def request_columns(served: pd.DataFrame, schema: TableSchema) -> dict[str, np.ndarray]:
    """The shop's impression columns from each served record's context, typed as declared.

    A key the shop no longer declares is ignored and a value that does not fit its kind is
    null, so that feedback logged under older params still trains.
    """
    declared = [c for c in schema.columns if c.name not in IMPRESSIONS.names]
    if not declared:
        return {}
    parsed = {text: _context(text) or {} for text in served["context"].dropna().unique()}
    rows = served["context"].map(parsed)
    out = {}
    for col in declared:
        values = pd.Series([(r or {}).get(col.name) if isinstance(r, dict) else None for r in rows])
        if col.type == "string":
            values = values.map(lambda v: v if isinstance(v, str) else None)
        else:
            values = pd.to_numeric(values, errors="coerce")
        out[col.name] = values.to_numpy()
    return out
