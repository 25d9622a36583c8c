"""What a ranking orders by (``serve.objective``): clicks, purchases or revenue.

One function for the service and for evaluation, so the order a shopper sees and the
order evaluation scores are the same:

    clicks     P(click)
    purchases  P(click) * P(purchase | click)              expected purchases
    revenue    price * P(click) * P(purchase | click)      expected sales

A model without a purchase head (trained on a log without purchases) knows nothing of
P(purchase | click) beyond a constant, so for it ``purchases`` orders as ``clicks`` and
``revenue`` as price * P(click).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Objective = Literal["clicks", "purchases", "revenue"]
OBJECTIVES: tuple[Objective, ...] = ("clicks", "purchases", "revenue")


def objective_scores(
    objective: str, p_click: np.ndarray, p_purchase: np.ndarray | None, price: np.ndarray | None
) -> np.ndarray:
    """The score to order candidates by; ``p_purchase`` is P(purchase | click), None if unknown."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    score = np.asarray(p_click, dtype=np.float64)
    if objective == "clicks":
        return score
    if p_purchase is not None:
        score = score * np.asarray(p_purchase, dtype=np.float64)
    if objective == "revenue":
        if price is None:
            raise ValueError("the revenue objective needs the candidates' prices")
        score = score * np.nan_to_num(np.asarray(price, dtype=np.float64), nan=0.0)
    return score


def needs_purchase(objective: str) -> bool:
    """Whether ``objective`` reads P(purchase | click) (scorers skip the head otherwise)."""
    return objective != "clicks"
