"""Why an item scored as it did: occlusion of feature groups, in one batched scorer call.

The groups are the explanation groups of the declared inputs (:mod:`shoprank.inputs.declare`).

For each explained result the scorer also scores copies with one feature group blanked
(numbers -> missing, which the scorers read as the training mean or "unknown"; the
query embedding -> zero). The drop in predicted CTR is the group's impact; the largest
positive impacts become the reasons, worded from the feature values.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from shoprank.inputs.declare import groups, longest_window, present
from shoprank.inputs.frame import Frame, Vectors

MIN_IMPACT = 0.001  # smaller drops in predicted CTR are not worth a reason


def occluded(frame: Frame) -> tuple[Frame, list[str]]:
    """``frame`` followed by one blanked copy per group that it has columns of."""
    parts_df = [frame.df]
    parts_vec: dict[str, list[np.ndarray]] = {k: [np.asarray(v)] for k, v in frame.vectors.items()}
    names: list[str] = []
    held = [x.name for x in present([*frame.df.columns, *frame.vectors])]
    for group, cols in groups(held).items():
        df = frame.df.copy()
        vec: dict[str, Any] = dict(frame.vectors)
        for c in cols:
            if c in vec:
                vec[c] = np.zeros(frame.vectors[c].shape, np.float32)
            elif pd.api.types.is_numeric_dtype(df[c]):
                df[c] = np.nan
            else:
                df[c] = None
        parts_df.append(df)
        for k in parts_vec:
            parts_vec[k].append(vec[k])
        names.append(group)
    with warnings.catch_warnings():  # blanked columns are all-NA by design
        warnings.simplefilter("ignore", FutureWarning)
        df = pd.concat(parts_df, ignore_index=True)
    big = Frame(df, {k: Vectors.of(np.concatenate(v)) for k, v in parts_vec.items()})
    return big, names


def impacts(scorer, frame: Frame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(scores, group -> score drop when the group is blanked), one scorer call."""
    big, names = occluded(frame)
    out = np.asarray(scorer.predict(big), dtype=np.float64)
    n = len(frame)
    base = out[:n]
    return base, {g: base - out[(i + 1) * n : (i + 2) * n] for i, g in enumerate(names)}


def _f(row: pd.Series, col: str) -> float:
    v = row.get(col)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def wording(group: str, row: pd.Series, cosine: float) -> str:
    if group == "query_match":
        return f"matches the query (text similarity {cosine:.2f})"
    if group == "popularity":
        w = longest_window(row.index)
        ctr, shown = _f(row, f"item_ctr_{w}"), _f(row, f"item_impressions_{w}")
        views = int(shown) if np.isfinite(shown) else 0
        span = "so far" if w == "all" else f"over {(w or '0d')[:-1]} days"
        if w is not None and np.isfinite(ctr):
            return f"popular: {ctr:.1%} click rate {span} ({views} views)"
        return "popular with shoppers"
    if group == "your_history":
        share = _f(row, "hist_category_share")
        if np.isfinite(share) and share > 0:
            return f"in a category you click often ({share:.0%} of your recent clicks)"
        return "fits your recent clicks"
    if group == "price":
        price = _f(row, "price")
        return f"price {price:.2f} suits you" if np.isfinite(price) else "the price suits you"
    if group == "freshness":
        return "new arrival" if _f(row, "item_is_new") == 1 else "an established product"
    if group == "brand_category":
        return f"{row.get('brand') or 'brand'} in {row.get('category') or 'its category'}"
    return group


def reasons(frame: Frame, drops: dict[str, np.ndarray], cosine: np.ndarray, top: int = 3) -> list[list[dict]]:
    """Per row: up to ``top`` reasons {feature, impact, text}, largest impact first."""
    out: list[list[dict]] = []
    groups = list(drops)
    matrix = np.stack([drops[g] for g in groups], axis=1) if groups else np.zeros((len(frame), 0))
    for i in range(len(frame)):
        row = frame.df.iloc[i]
        order = np.argsort(-matrix[i], kind="stable") if groups else np.zeros(0, np.int64)
        mine = [
            {
                "feature": groups[j],
                "impact": round(float(matrix[i, j]), 4),
                "text": wording(groups[j], row, float(cosine[i])),
            }
            for j in order[:top]
            if matrix[i, j] > MIN_IMPACT
        ]
        out.append(mine)
    return out
