"""Drift statistics of one column between a reference sample and a current sample.

The population stability index (PSI) compares the shares of rows per bin:
``sum((cur - ref) * ln(cur / ref))``. Numeric bins come from the reference's quantiles, and
each cut point is a bin of its own besides the ranges between cut points: counts, flags and
smoothed rates repeat a few values often, and a shift onto or off such a value must show.
Categorical bins are the reference's commonest values plus ``other`` (rarer values and
values the reference never had). A missing value is a bin of its own in both kinds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

OTHER = "other"
MISSING = "missing"
# a bin empty on one side would make ln(cur / ref) infinite: shares are floored at this
MIN_SHARE = 1e-4
NUMERIC_KINDS = frozenset({"numeric", "cross"})  # a cross of inputs (inputs/derive.py) is a number
CATEGORICAL_KINDS = frozenset({"categorical"})


@dataclass(frozen=True)
class Thresholds:
    warn: float
    alert: float

    def status(self, psi: float | None) -> str:
        if psi is None:
            return "not_computed"
        return "alert" if psi >= self.alert else "warn" if psi >= self.warn else "ok"


def psi_of_counts(ref: np.ndarray, cur: np.ndarray) -> float | None:
    """PSI of two count vectors over the same bins; None when either side has no rows."""
    if ref.sum() == 0 or cur.sum() == 0:
        return None
    r = np.maximum(ref / ref.sum(), MIN_SHARE)
    c = np.maximum(cur / cur.sum(), MIN_SHARE)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_bins(ref: np.ndarray, cur: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of ``ref`` and ``cur`` per reference quantile bin (cut points apart), missing last."""
    ref, cur = np.asarray(ref, np.float64), np.asarray(cur, np.float64)
    known = ref[~np.isnan(ref)]
    cuts = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1])) if len(known) else np.zeros(0)
    if len(known) and not len(cuts):  # a single reference value still splits below / at / above
        cuts = known[:1]

    def counts(x: np.ndarray) -> np.ndarray:
        seen = x[~np.isnan(x)]
        # below cut 0 -> 0, at cut 0 -> 1, between cuts 0 and 1 -> 2, ...: 2 * len(cuts) + 1 bins
        code = np.searchsorted(cuts, seen, side="left") + np.searchsorted(cuts, seen, side="right")
        return np.append(np.bincount(code, minlength=2 * len(cuts) + 1), len(x) - len(seen))

    return counts(ref), counts(cur)


def categorical_bins(ref: pd.Series, cur: pd.Series, max_categories: int) -> tuple[pd.Series, pd.Series]:
    """Counts of ``ref`` and ``cur`` per kept reference value, ``other`` and ``missing``."""
    kept = ref.dropna().astype(str).value_counts().index[:max_categories]

    def bucket(s: pd.Series) -> pd.Series:
        text = s.astype(str)
        out = text.where(text.isin(kept), OTHER).where(s.notna(), MISSING)
        return out.value_counts().reindex([*kept, OTHER, MISSING], fill_value=0)

    return bucket(ref), bucket(cur)


def numeric_drift(ref: np.ndarray, cur: np.ndarray, bins: int) -> dict:
    """PSI over reference quantile bins, and the two-sample Kolmogorov-Smirnov test of the known values."""
    from scipy.stats import ks_2samp

    ref, cur = np.asarray(ref, np.float64), np.asarray(cur, np.float64)
    r_counts, c_counts = numeric_bins(ref, cur, bins)
    out: dict = {"psi": _round(psi_of_counts(r_counts, c_counts))}
    r, c = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if len(r) and len(c):
        test = ks_2samp(r, c)
        out |= {"ks": _round(float(test.statistic)), "ks_pvalue": _round(float(test.pvalue))}
    else:
        out |= {"ks": None, "ks_pvalue": None}
    out |= {"reference_mean": _round(_mean(r)), "current_mean": _round(_mean(c))}
    out["missing_share"] = {
        "reference": _share(len(ref) - len(r), len(ref)),
        "current": _share(len(cur) - len(c), len(cur)),
    }
    return out


def categorical_drift(ref: pd.Series, cur: pd.Series, max_categories: int) -> dict:
    """PSI over the commonest reference values, ``other`` and ``missing``; the current share of ``other``."""
    r_counts, c_counts = categorical_bins(ref, cur, max_categories)
    return {
        "psi": _round(psi_of_counts(r_counts.to_numpy(), c_counts.to_numpy())),
        "other_share": {
            "reference": _share(int(r_counts[OTHER]), len(ref)),
            "current": _share(int(c_counts[OTHER]), len(cur)),
        },
    }


def daily_outcomes(df: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """Impressions, CTR and purchase rate per UTC day; ``day`` counts days since ``start``.

    A frame without a ``purchased`` column has no purchase rate (the column is left out).
    """
    date = df["event_timestamp"].dt.floor("D")
    grouped = df.assign(date=date).groupby("date", sort=True)
    out = grouped.agg(impressions=("clicked", "size"), ctr=("clicked", "mean"))
    if "purchased" in df:
        out["purchase_rate"] = grouped["purchased"].mean()
    out = out.reset_index().round({"ctr": 6, "purchase_rate": 6})
    out.insert(0, "day", (out["date"] - start.floor("D")).dt.days)
    out["date"] = out["date"].dt.strftime("%Y-%m-%d")
    return out


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def _share(part: int, whole: int) -> float | None:
    return _round(part / whole) if whole else None


def _round(x: float | None) -> float | None:
    """Six decimals; None for a value that could not be computed (strict JSON has no NaN)."""
    return None if x is None or not math.isfinite(x) else round(x, 6)
