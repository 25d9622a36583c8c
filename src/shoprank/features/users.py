"""User feature tables: profile (static), stats (daily snapshots) and click history.

Every table has ``user_id`` and ``event_timestamp``; docs/features.md lists the columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from shoprank.config import Features
from shoprank.features.batch import Batch
from shoprank.features.history import DAYS_ALL, cumulative, prior_ctr, smoothed_ctr, snapshot_rows, windowed
from shoprank.features.items import shop_columns, versions
from shoprank.inputs.declare import window_label

PROFILE_COLUMNS = ("region", "device")  # optional in the contract: null when absent


def user_profile(batch: Batch) -> pd.DataFrame:
    """One row per user stamped at sign-up: the optional profile columns."""
    u = batch.users
    out = pd.DataFrame({"user_id": u["user_id"].astype("string"), "event_timestamp": u["created_at"]})
    for col in PROFILE_COLUMNS:
        out[col] = u[col].astype("string") if col in u else pd.array([None] * len(u), dtype="string")
    return pd.concat([out.reset_index(drop=True), shop_columns(u, "user_profile")], axis=1)


def _click_counts(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, snapshots) impressions, clicks and summed price of clicked items before each snapshot."""
    imp, tl, n = batch.impressions, batch.timeline, len(batch.users)
    user, day = imp["user"].to_numpy(), imp["day"].to_numpy()
    clicked = imp["clicked"].to_numpy(np.float64)
    price = batch.catalog["price"].to_numpy(np.float64)[imp["item"].to_numpy()]
    return (
        cumulative(user, day, n, tl.n_days),
        cumulative(user, day, n, tl.n_days, clicked),
        cumulative(user, day, n, tl.n_days, clicked * price),
    )


def user_stats(batch: Batch, settings: Features) -> pd.DataFrame:
    """Daily snapshots per user: impressions and smoothed CTR per window, clicks, price preference.

    ``user_price_pref`` is the mean price of the items the user clicked before the
    snapshot (null before the first click).
    """
    shown, clicks, spent = _click_counts(batch)
    prior = prior_ctr(clicks, shown)
    user, snap, stamp = snapshot_rows(batch.users["created_at"], batch.timeline)
    out = {
        "user_id": batch.users["user_id"].astype("string").iloc[user].reset_index(drop=True),
        "event_timestamp": stamp,
    }
    for window in settings.windows_days:
        days, w = DAYS_ALL if window == "all" else int(window), window_label(window)
        shown_w, clicks_w = windowed(shown, days), windowed(clicks, days)
        out[f"user_impressions_{w}"] = shown_w[user, snap].astype(np.int64)
        ctr = smoothed_ctr(clicks_w, shown_w, prior, settings.ctr_prior_strength)
        out[f"user_ctr_{w}"] = ctr[user, snap].astype(np.float32)
    n_clicks = clicks[user, snap]
    out["user_clicks"] = n_clicks.astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["user_price_pref"] = np.where(n_clicks > 0, spent[user, snap] / n_clicks, np.nan).astype(
            np.float32
        )
    return pd.DataFrame(out)


def _sequences(values: np.ndarray, ends: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """list<string> rows ``values[end - 1], values[end - 2], ...`` of the given lengths (newest first)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)  # 0, 1, .. per row
    idx = np.repeat(ends - 1, lengths) - within
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[idx], pa.string()))


def user_history(batch: Batch, settings: Features) -> pa.Table:
    """The user's last ``history_length`` clicked items and their categories, newest first.

    A row is written when the sequence changes (the snapshot after a day with clicks)
    plus one empty row when the user appears, so a point-in-time join always finds one.
    Rows carry only clicks strictly before their stamp, like the stats.
    """
    imp = batch.impressions
    clicked = imp[imp["clicked"] == 1]
    # oldest first per user; within one response, the item shown higher comes last (= "newer")
    clicked = clicked.sort_values(["user", "ts", "position"], ascending=[True, True, False], kind="stable")
    items = clicked["item"].to_numpy()
    click_item = batch.catalog["item_id"].astype(str).to_numpy()[items]
    click_cat = batch.catalog["category"].astype(str).to_numpy()[items]
    first = np.searchsorted(clicked["user"].to_numpy(), np.arange(len(batch.users)))  # (users,)

    _, clicks, _ = _click_counts(batch)
    user, snap, stamp = snapshot_rows(batch.users["created_at"], batch.timeline)
    count = clicks[user, snap].astype(np.int64)
    new_user = np.r_[True, user[1:] != user[:-1]]
    keep = new_user | np.r_[True, count[1:] != count[:-1]]
    user, count, stamp = user[keep], count[keep], stamp[keep].reset_index(drop=True)
    ends, lengths = first[user] + count, np.minimum(count, settings.history_length)
    return pa.table(
        {
            "user_id": pa.array(batch.users["user_id"].astype(str).to_numpy()[user]),
            "event_timestamp": pa.array(stamp),
            "user_history_version": versions(stamp),
            "recent_items": _sequences(click_item, ends, lengths),
            "recent_categories": _sequences(click_cat, ends, lengths),
        }
    )
