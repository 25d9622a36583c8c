"""The collaborative-filtering candidate learns who likes what, beyond each item's popularity."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shoprank.config import CF
from shoprank.evaluation.metrics import auc
from shoprank.inputs.frame import Frame
from shoprank.models.cf import CollaborativeModel
from shoprank.models.preprocess import FeatureSpec

SPEC = FeatureSpec(numeric=(), categorical=())


def taste_log(n: int, seed: int) -> Frame:
    """Users of two tastes, items of two kinds: a click is likely only when they match."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 200, n)
    item = rng.integers(0, 100, n)
    match = (user % 2) == (item % 2)
    clicked = rng.random(n) < np.where(match, 0.6, 0.1)
    df = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in user],
            "item_id": [f"i{i}" for i in item],
            "position": rng.integers(1, 5, n),
            "clicked": clicked.astype(int),
        }
    )
    return Frame(df, {})


def test_cf_learns_the_interaction_that_item_popularity_cannot_see():
    train, val, test = taste_log(40_000, 0), taste_log(5_000, 1), taste_log(5_000, 2)
    model = CollaborativeModel(CF(dim=8, epochs=15, lr=0.02, weight_decay=1e-5), seed=0).fit(train, val, SPEC)
    y = test.df["clicked"].to_numpy()
    p = model.predict(test)
    assert auc(y, p) > 0.75  # the truth's own AUC is about 0.79
    item_rate = train.df.groupby("item_id")["clicked"].mean()
    assert auc(y, test.df["item_id"].map(item_rate).to_numpy()) < 0.6  # popularity alone is near chance
    assert abs(p.mean() - y.mean()) < 0.05  # calibrated on average


def test_rare_and_unseen_ids_share_the_fallback_row():
    train = taste_log(20_000, 0)
    train.df.loc[0, ["user_id", "item_id"]] = ["rare-user", "rare-item"]  # seen once: below min_count
    model = CollaborativeModel(CF(dim=4, epochs=3, min_count=5), seed=0).fit(train, taste_log(2_000, 1), SPEC)
    assert "rare-user" not in model.users and "rare-item" not in model.items and len(model.items) == 100
    rows = pd.DataFrame(
        {"user_id": ["rare-user", "never-seen"], "item_id": ["rare-item", "unknown"], "position": [1, 1]}
    )
    p = model.predict(Frame(rows, {}))
    assert np.isfinite(p).all() and p[0] == p[1]  # both are the fallback shopper and item
    ids, factors = model.item_factors()
    assert len(ids) == 100 and factors.shape == (100, 4) and model.items[ids[0]] == 1
