"""The click model: true attractiveness of a candidate for a request, and purchases.

A position-based model: P(click at position k) = examination(k) * attractiveness,
with attractiveness = sigmoid(utility) and utility a sum of interpretable terms
(docs/simulator.md lists them with their params.yaml knobs).
"""

from __future__ import annotations

import numpy as np

from shoprank.config import Clicks
from shoprank.data.simulator.catalog import Items
from shoprank.data.simulator.requests import INTENT_NAMES, LEVEL_SUB, LEVEL_TYPE, Requests
from shoprank.data.simulator.users import Users

FRESH_DAYS = 14  # an item counts as new for the novelty term this long after launch
INTENT_BASE = {"learn": -0.8, "browse": -0.2, "recommend": -0.3}  # utility shift by intent
INTENT_PURCHASE = {"buy": 0.8, "price": 0.4, "compare": 0.0, "browse": -0.5, "learn": -2.0, "recommend": -0.5}
PRICE_INTENT_MULT = 2.5  # price-seeking shoppers weigh price this much more
COMPARE_QUALITY_MULT = 1.5  # comparing shoppers weigh quality this much more
OVER_CAP_PENALTY = 1.5  # 'under 50' and the item costs more


def examination(page_size: int, decay: float) -> np.ndarray:
    """(page_size,) probability that a shopper looks at position k = 1..page_size."""
    return 1.0 / np.arange(1, page_size + 1) ** decay


def _by_intent(table: dict[str, float], intent: np.ndarray) -> np.ndarray:
    return np.array([table.get(name, 0.0) for name in INTENT_NAMES])[intent]


def attractiveness(
    items: Items,
    users: Users,
    req: Requests,
    rows: np.ndarray,
    cand: np.ndarray,
    days: int,
    c: Clicks,
    rng: np.random.Generator,
) -> np.ndarray:
    """(len(rows), n_candidates) true P(click | examined) of each candidate item.

    sigmoid(base utility + the :func:`utility_terms` + N(0, ``c.noise``) per candidate).
    """
    utility: np.ndarray | float = c.base_utility
    for term in utility_terms(items, users, req, rows, cand, days, c).values():
        utility = utility + term  # left to right, as the terms are listed
    utility = utility + c.noise * rng.normal(size=cand.shape)
    return 1.0 / (1.0 + np.exp(-utility))


def utility_terms(
    items: Items,
    users: Users,
    req: Requests,
    rows: np.ndarray,
    cand: np.ndarray,
    days: int,
    c: Clicks,
) -> dict[str, np.ndarray]:
    """The named parts of each candidate's utility, each (len(rows), n_candidates).

    What a click model could learn, term by term (bench/bench_attainable.py measures how
    much of each the models capture): intent, match, attribute, affinity, brand, price,
    quality, novelty. Only the noise is left out.
    """
    col = lambda a: a[rows][:, None]  # noqa: E731 - per-request value against (r, C) candidates
    n_tops = users.top_pref_start.shape[1]
    top_pref, brand_aff, price_sens = users.at(req.user[rows], req.day[rows] / days, c.drift)
    r_idx = np.arange(len(rows))[:, None]
    it_top, it_type = items.top[cand], items.type[cand]

    same_type = it_type == col(req.target_type)
    same_sub = items.sub[cand] == col(req.target_sub)
    same_top = it_top == col(req.target_top)
    level = col(req.level)
    match = np.where(
        level == LEVEL_TYPE,
        c.w_type * same_type + c.w_subcategory * (same_sub & ~same_type),
        np.where(
            level == LEVEL_SUB,
            0.8 * c.w_type * same_sub + 0.3 * c.w_subcategory * same_top,
            0.5 * c.w_type * same_top,
        ),
    )

    # requested attributes; colour, material and size indices are per top category
    asked = [
        col(req.colour) >= 0,
        col(req.material) >= 0,
        col(req.size) >= 0,
        col(req.feature) >= 0,
        col(req.brand) >= 0,
    ]
    has = [
        same_top & (items.colour[cand] == col(req.colour)),
        same_top & (items.material[cand] == col(req.material)),
        same_top & (items.size[cand] == col(req.size)),
        same_type
        & ((items.feature[cand, 0] == col(req.feature)) | (items.feature[cand, 1] == col(req.feature))),
        items.brand[cand] == col(req.brand),
    ]
    n_asked = sum(a.astype(int) for a in asked)
    n_matched = sum((a & h).astype(int) for a, h in zip(asked, has, strict=True))
    attribute = c.w_attribute * (n_matched - 0.5 * (n_asked - n_matched))

    affinity = c.w_category_pref * np.clip(np.log(n_tops * top_pref[r_idx, it_top] + 1e-9), -2, 2)
    brand = c.w_brand * brand_aff[r_idx, items.brand[cand]]

    intent = col(req.intent)
    price_mult = np.where(intent == INTENT_NAMES.index("price"), PRICE_INTENT_MULT, 1.0)
    price = -c.w_price * price_sens[:, None] * price_mult * items.rel_log_price[cand]
    price -= OVER_CAP_PENALTY * (items.price[cand] > col(req.price_cap))
    q_mult = np.where(intent == INTENT_NAMES.index("compare"), COMPARE_QUALITY_MULT, 1.0)
    quality = c.w_quality * q_mult * items.quality[cand]
    fresh = (col(req.day) - items.created_day[cand]) < FRESH_DAYS
    novelty = c.w_novelty * users.novelty[req.user[rows]][:, None] * fresh

    return {
        "intent": np.broadcast_to(_by_intent(INTENT_BASE, intent), cand.shape),
        "match": match,
        "attribute": attribute,
        "affinity": affinity,
        "brand": brand,
        "price": price,
        "quality": quality,
        "novelty": novelty,
    }


def purchase_probability(
    items: Items, users: Users, req: Requests, rows: np.ndarray, shown: np.ndarray, c: Clicks
) -> np.ndarray:
    """(len(rows), page) P(purchase | click) for the shown items."""
    logit = (
        c.purchase_base
        + _by_intent(INTENT_PURCHASE, req.intent[rows])[:, None]
        + 0.5 * items.quality[shown]
        - 0.5 * users.price_sens_start[req.user[rows]][:, None] * items.rel_log_price[shown]
    )
    return 1.0 / (1.0 + np.exp(-logit))
