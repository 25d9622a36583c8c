"""The time split of the training table: the future is never trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

SPLIT_COLUMNS = ("request_id", "event_timestamp")


def read_split(
    path: Path | str, val_share: float, test_share: float
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """:func:`time_split` of a training table from its key columns only, and those columns
    (with ``query`` and ``item_id``: what evaluation's row groups are defined by)."""
    keys = pq.read_table(path, columns=[*SPLIT_COLUMNS, "query", "item_id"]).to_pandas()
    return time_split(keys, val_share, test_share), keys


def cold_items(keys: pd.DataFrame) -> np.ndarray:
    """Per row: its item had no impression before the row's day (UTC) anywhere in the log.

    A cold item has no history for a model to learn from, whatever its listing date says.
    """
    day = keys["event_timestamp"].dt.floor("D")
    first = day.groupby(keys["item_id"], observed=True).transform("min")
    return (first >= day).to_numpy()


def time_split(df: pd.DataFrame, val_share: float, test_share: float) -> dict[str, np.ndarray]:
    """Row indices of train / val / test by request time: the future is never trained on.

    Whole requests stay together; the cut points are quantiles of request start times.
    """
    start = df.groupby("request_id")["event_timestamp"].transform("min")
    t = start.astype("int64").to_numpy()
    req_t = df.drop_duplicates("request_id")["event_timestamp"].astype("int64").to_numpy()
    t_val, t_test = np.quantile(req_t, [1 - val_share - test_share, 1 - test_share])
    return {
        "train": np.flatnonzero(t < t_val),
        "val": np.flatnonzero((t >= t_val) & (t < t_test)),
        "test": np.flatnonzero(t >= t_test),
    }
