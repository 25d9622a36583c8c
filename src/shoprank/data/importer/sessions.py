"""Request ids for logs that have none: a user's events grouped into sessions.

With ``session_gap_minutes``, each user's events are ordered by time and a new session
starts when the time since the user's previous event exceeds the gap; sessions are
numbered from 1 per user in time order and the id is ``<user_id>-<n>``. With ``column``,
events of one user with the same value of that column form one request,
``<user_id>-<value>``. Both depend only on the values, not on the order of the rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shoprank.config_data import Sessions
from shoprank.data.importer.coerce import parse
from shoprank.data.importer.problems import Problem


def request_ids(
    user: pd.Series, ts: pd.Series, rule: Sessions, raw: pd.DataFrame
) -> tuple[pd.Series, list[Problem]]:
    """One request id per row (``user`` and ``ts`` have no nulls), and the rows that get none."""
    if rule.column is not None:
        value, problem = parse(raw.loc[user.index, rule.column], "string", rule.column)
        null = value.isna().to_numpy()
        problems = [Problem(f"column {rule.column!r}: null, cannot tell the request", null)]
        return (user + "-" + value).astype("string"), problems + ([problem] if problem else [])
    return by_gap(user, ts, pd.Timedelta(minutes=rule.session_gap_minutes or 0)), []


def by_gap(user: pd.Series, ts: pd.Series, gap: pd.Timedelta) -> pd.Series:
    """``<user_id>-<n>``: the n-th session of the user, a new one after more than ``gap`` without events."""
    frame = pd.DataFrame(
        {"user": user.astype(str).to_numpy(), "ts": ts.to_numpy(), "row": np.arange(len(user))}
    )
    frame = frame.sort_values(["user", "ts", "row"], kind="stable")
    first = frame["user"].ne(frame["user"].shift())
    new = first | (frame["ts"].diff() > gap)
    number = new.astype(int).groupby(frame["user"]).cumsum()
    ids = frame["user"] + "-" + number.astype(str)
    out = pd.Series(ids.to_numpy(), index=frame["row"].to_numpy()).sort_index()
    return pd.Series(out.to_numpy(), index=user.index, dtype="string")
