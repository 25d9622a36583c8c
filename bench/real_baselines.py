"""Simple baselines on an imported log, built here from the contract tables alone.

They share nothing with shoprank's features or models, so a candidate that beats them
has beaten an independent implementation: a smoothed all-history item click rate
refreshed daily, and LightGBM on ids, the shop's profile columns and all-history
statistics. Every statistic of a row counts only impressions before the row's day (UTC).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PRIOR = 20.0  # pseudo-impressions at the global click rate behind every smoothed rate


def history_before_day(log: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per row of ``log``: impressions and clicks of its ``key`` on earlier days (not its own)."""
    day = log["ts"].dt.floor("D")
    daily = log.assign(day=day).groupby([key, "day"], observed=True)["clicked"].agg(["size", "sum"])
    daily = daily.groupby(level=0, observed=True).cumsum()  # through the end of each day
    daily = daily.groupby(level=0, observed=True).shift(1).fillna(0)  # before each day
    # every row's (key, day) is in the table: the row itself was shown that day
    out = pd.DataFrame({key: log[key].to_numpy(), "day": day.to_numpy()})
    table = daily.reset_index().rename(columns={"size": "n", "sum": "clicks"})
    merged = out.reset_index().merge(table, on=[key, "day"], how="left").set_index("index").sort_index()
    return merged[["n", "clicks"]].fillna(0)


def smoothed(n: np.ndarray, clicks: np.ndarray, g: float) -> np.ndarray:
    return (clicks + PRIOR * g) / (n + PRIOR)


def daily_item_ctr(log: pd.DataFrame, g: float) -> np.ndarray:
    """The one-line baseline: the item's smoothed click rate over all days before the row's."""
    h = history_before_day(log, "item_id")
    return smoothed(h["n"].to_numpy(), h["clicks"].to_numpy(), g)


def tabular_features(log: pd.DataFrame, users: pd.DataFrame, g: float, profile: list[str]) -> pd.DataFrame:
    """Ids, the users' profile columns and all-history item and user statistics per row."""
    x = pd.DataFrame(index=log.index)
    for who in ("item_id", "user_id"):
        h = history_before_day(log, who)
        prefix = who.removesuffix("_id")
        x[f"{prefix}_n"] = h["n"].to_numpy()
        x[f"{prefix}_ctr"] = smoothed(h["n"].to_numpy(), h["clicks"].to_numpy(), g)
        x[who] = log[who].astype("category")
    prof = users.set_index("user_id")[profile]
    for c in profile:
        col = log["user_id"].map(prof[c])
        x[c] = col.astype("category") if not pd.api.types.is_numeric_dtype(prof[c]) else col.astype(float)
    return x


def lightgbm_baseline(
    x: pd.DataFrame, y: np.ndarray, split: dict[str, np.ndarray], seed: int = 0, rounds: int = 400
) -> np.ndarray:
    """LightGBM fitted on the train rows, early-stopped on the validation rows; scores of every row."""
    import lightgbm as lgb

    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 50}
    params |= {"verbose": -1, "seed": seed, "cat_smooth": 20.0}
    train = lgb.Dataset(x.iloc[split["train"]], y[split["train"]])
    val = lgb.Dataset(x.iloc[split["val"]], y[split["val"]], reference=train)
    booster = lgb.train(
        params, train, rounds, valid_sets=[val], callbacks=[lgb.early_stopping(30, verbose=False)]
    )
    return np.asarray(booster.predict(x, num_iteration=booster.best_iteration))
