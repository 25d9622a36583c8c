"""Shoppers the feedback log knows and the raw batch does not: sign-ups since the batch.

The service answers shoppers who signed up after the last import or simulation. Their pages
and clicks are real feedback, so ingestion keeps them and lists those shoppers in
``<feedback>/users.parquet``: the pseudonym and ``created_at``, the time of their first served
record. `validate` appends them to the batch's users beside the feedback impressions, with the
profile columns (region, device, the shop's declared user columns) unknown: null.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shoprank.data.schema import USERS, conform, empty

USERS_FILE = "users.parquet"  # beside the ingested impressions
COLUMNS = ["user_id", "created_at"]


def new_shoppers(served: pd.DataFrame, known: pd.Series) -> pd.DataFrame:
    """The shoppers of ``served`` records whose id is not among ``known``, first seen first."""
    uid = served["user_id"].astype("string")
    fresh = served[uid.notna() & ~uid.isin(known)]
    if fresh.empty:
        return conform(empty(USERS, COLUMNS), USERS)
    first = pd.to_datetime(fresh["ts"], utc=True).groupby(fresh["user_id"].astype(str)).min()
    out = pd.DataFrame({"user_id": first.index.to_numpy(), "created_at": first.to_numpy()})
    out = out.sort_values(["created_at", "user_id"], kind="stable").reset_index(drop=True)
    return conform(out, USERS)


def with_new_shoppers(users: pd.DataFrame, feedback_users: Path) -> pd.DataFrame:
    """The batch's ``users`` followed by the feedback's new shoppers (profile columns null)."""
    if not feedback_users.is_file():
        return users
    new = pd.read_parquet(feedback_users, columns=COLUMNS)
    new = new[~new["user_id"].isin(users["user_id"])]
    if new.empty:
        return users
    rows = pd.DataFrame({c: pd.Series([None] * len(new), dtype=users[c].dtype) for c in users.columns})
    rows["user_id"] = new["user_id"].astype(users["user_id"].dtype).to_numpy()
    created = pd.to_datetime(new["created_at"], utc=True)
    rows["created_at"] = created.astype(users["created_at"].dtype).to_numpy()
    return pd.concat([users, rows], ignore_index=True)
