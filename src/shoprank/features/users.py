"""User feature tables: profile (static), stats (daily snapshots) and click history.

Every table has ``user_id`` and ``event_timestamp``; docs/features.md lists the columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from shoprank.config import Features
from shoprank.features.batch import Batch
from shoprank.features.history import cumulative, prior_ctr, smoothed_ctr, snapshot_rows, windowed, windows
from shoprank.features.items import declared_columns, versions

PROFILE_COLUMNS = ("region", "device")  # optional in the contract: null when absent


def user_profile(batch: Batch) -> pd.DataFrame:
    """One row per user stamped at sign-up: the optional profile columns."""
    u = batch.users
    out = pd.DataFrame({"user_id": u["user_id"].astype("string"), "event_timestamp": u["created_at"]})
    for col in PROFILE_COLUMNS:
        out[col] = u[col].astype("string") if col in u else pd.array([None] * len(u), dtype="string")
    return pd.concat([out.reset_index(drop=True), declared_columns(u, "user_profile")], axis=1)


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


def today_rows(batch: Batch) -> pd.DataFrame:
    """Per distinct (user, time) of the user's impressions: ``n`` shown and ``c`` clicked earlier
    that day (UTC), strictly before that time, and the day's snapshot ``day``; ``ts`` in
    microseconds since the epoch."""
    imp = batch.impressions
    events = pd.DataFrame(
        {
            "user": imp["user"].to_numpy(np.int64),
            "ts": imp["ts"].dt.tz_convert("UTC").to_numpy(dtype="datetime64[us]").astype(np.int64),
            "day": imp["day"].to_numpy(np.int64),
            "clicked": imp["clicked"].to_numpy(np.float64),
        }
    )
    per = (
        events.groupby(["user", "ts"], sort=True)
        .agg(day=("day", "first"), n=("clicked", "size"), c=("clicked", "sum"))
        .reset_index()
    )
    by_day = per.groupby(["user", "day"], sort=False)
    per["n"], per["c"] = by_day["n"].cumsum() - per["n"], by_day["c"].cumsum() - per["c"]
    return per


def _with_today(batch: Batch) -> tuple[np.ndarray, np.ndarray, pd.Series, np.ndarray, np.ndarray]:
    """The daily snapshot rows (nothing yet today) and a row at each time the user was shown
    something, carrying that day's snapshot and the day so far: (user, snap, stamp, n, c)."""
    user, snap, stamp = snapshot_rows(batch.users["created_at"], batch.timeline)
    today = today_rows(batch)
    rows = pd.DataFrame(
        {
            "user": np.concatenate([user, today["user"].to_numpy()]),
            "snap": np.concatenate([snap, np.clip(today["day"].to_numpy(), 0, batch.timeline.n_days)]),
            "stamp": np.concatenate(
                [stamp.to_numpy(dtype="datetime64[us]").astype(np.int64), today["ts"].to_numpy(np.int64)]
            ),
            "n": np.concatenate([np.zeros(len(user)), today["n"].to_numpy(np.float64)]),
            "c": np.concatenate([np.zeros(len(user)), today["c"].to_numpy(np.float64)]),
        }
    )
    # at an equal stamp the event row (it knows the day so far) wins over the day's first row
    rows = rows.drop_duplicates(["user", "stamp"], keep="last").sort_values(["user", "stamp"], kind="stable")
    stamp = pd.Series(pd.to_datetime(rows["stamp"].to_numpy(), unit="us", utc=True))
    return rows["user"].to_numpy(), rows["snap"].to_numpy(), stamp, rows["n"].to_numpy(), rows["c"].to_numpy()


def user_stats(batch: Batch, settings: Features) -> pd.DataFrame:
    """Per user: a snapshot each day and a row each time the user was shown something.

    Every row has impressions and smoothed CTR per window, clicks and price preference as of
    its day's snapshot, and what the user was shown and clicked earlier that day
    (``user_impressions_today``, ``user_ctr_today``): a shopper's session so far. Each row
    counts only events strictly before its stamp. ``user_price_pref`` is the mean price of
    the items the user clicked before the snapshot (null before the first click).
    """
    shown, clicks, spent = _click_counts(batch)
    prior = prior_ctr(clicks, shown)
    user, snap, stamp, n_today, c_today = _with_today(batch)
    k = settings.ctr_prior_strength
    out = {
        "user_id": batch.users["user_id"].astype("string").iloc[user].reset_index(drop=True),
        "event_timestamp": stamp,
        "user_impressions_today": n_today.astype(np.int64),
        "user_ctr_today": ((c_today + k * prior[snap]) / (n_today + k)).astype(np.float32),
    }
    for days, w in windows(settings.windows_days):
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
