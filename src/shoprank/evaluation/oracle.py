"""Scoring rankings with the simulator's ground truth.

With the true attractiveness of every candidate and the examination curve, the
expected clicks of any ranking of a request's candidates are known exactly:
E[clicks in top k] = sum_{j<=k} examination(j) * attractiveness(item at j).
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
    df = pd.DataFrame(
        {
            "request_id": candidates["request_id"].to_numpy(),
            "attractiveness": candidates["attractiveness"].to_numpy(),
            "score": np.asarray(scores, dtype=np.float64),
            "row": np.arange(len(candidates)),
        }
    )
    df = df.sort_values(["request_id", "score", "row"], ascending=[True, False, True], kind="stable")
    rank = df.groupby("request_id", sort=False).cumcount().to_numpy()
    top = rank < min(k, len(examination))
    gain = df["attractiveness"].to_numpy()[top] * examination[rank[top]]
    return float(gain.sum() / df["request_id"].nunique())
