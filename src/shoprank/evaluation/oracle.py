"""Scoring rankings with the simulator's ground truth.

With the true attractiveness of every candidate and the examination curve, the
expected clicks of any ranking of a request's candidates are known exactly:
E[clicks in top k] = sum_{j<=k} examination(j) * attractiveness(item at j).
With the true P(purchase | click) and the price, so are the expected sales:
E[revenue in top k] = sum_{j<=k} examination(j) * attractiveness * P(purchase | click) * price.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def expected_clicks(
    candidates: pd.DataFrame, scores: np.ndarray, examination: np.ndarray, k: int = 10
) -> float:
    """Mean over requests of the expected clicks in the top ``k`` when ranking by ``scores``.

    ``candidates`` has one row per (request_id, item_id) with the true ``attractiveness``
    (truth/candidates.parquet); ``scores`` aligns with its rows; higher ranks first.
    Ties are broken by row order, so pass scores without ties for a fair comparison.
    """
    return expected_gain(candidates, scores, examination, np.ones(len(candidates)), k)


def expected_revenue(
    candidates: pd.DataFrame, scores: np.ndarray, examination: np.ndarray, k: int = 10
) -> float:
    """Mean over requests of the expected sales in the top ``k`` when ranking by ``scores``.

    ``candidates`` also holds the true ``p_purchase`` (P(purchase | click)) and ``price``.
    """
    value = candidates["p_purchase"].to_numpy() * candidates["price"].to_numpy()
    return expected_gain(candidates, scores, examination, value, k)


def revenue_truth(candidates: pd.DataFrame) -> np.ndarray:
    """The true expected sales of each candidate if shown first: what the revenue oracle ranks by."""
    return (
        candidates["attractiveness"].to_numpy()
        * candidates["p_purchase"].to_numpy()
        * candidates["price"].to_numpy()
    )


def expected_gain(
    candidates: pd.DataFrame, scores: np.ndarray, examination: np.ndarray, value: np.ndarray, k: int
) -> float:
    """Mean over requests of sum_{j<=k} examination(j) * attractiveness * value of the item at j."""
    df = pd.DataFrame(
        {
            "request_id": candidates["request_id"].to_numpy(),
            "gain": candidates["attractiveness"].to_numpy() * np.asarray(value, dtype=np.float64),
            "score": np.asarray(scores, dtype=np.float64),
            "row": np.arange(len(candidates)),
        }
    )
    df = df.sort_values(["request_id", "score", "row"], ascending=[True, False, True], kind="stable")
    rank = df.groupby("request_id", sort=False).cumcount().to_numpy()
    top = rank < min(k, len(examination))
    gain = df["gain"].to_numpy()[top] * examination[rank[top]]
    return float(gain.sum() / df["request_id"].nunique())
