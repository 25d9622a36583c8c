"""The training table read for modelling: a time split and a few derived cross features.

Text embeddings are read straight from Arrow into (n, dim) float32 arrays: a list
column of 800k rows x 384 floats as Python objects would cost minutes and gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

VECTOR_COLUMNS = ("query_embedding", "item_embedding")


@dataclass
class Frame:
    """Scalar columns as pandas, text embeddings as dense arrays aligned with its rows."""

    df: pd.DataFrame
    vectors: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.df)

    def take(self, rows: np.ndarray) -> Frame:
        return Frame(self.df.iloc[rows].reset_index(drop=True), {k: v[rows] for k, v in self.vectors.items()})


def dense(column: pa.ChunkedArray | pa.Array, dim: int | None = None) -> np.ndarray:
    """A list<float> column -> (n, dim) float32; null or empty lists become zero rows."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc_lengths(arr)
    dim = dim or int(lengths.max(initial=0))
    out = np.zeros((len(arr), dim), dtype=np.float32)
    full = lengths == dim
    if dim and full.any():
        values = arr.filter(pa.array(full)).flatten().to_numpy(zero_copy_only=False)
        out[full] = values.reshape(-1, dim)
    return out


def pc_lengths(arr: pa.Array) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)


def read_frame(path: Path | str, vectors: tuple[str, ...] = VECTOR_COLUMNS) -> Frame:
    table = pq.read_table(path)
    vec = {name: dense(table[name]) for name in vectors if name in table.column_names}
    df = table.drop_columns([n for n in vec]).to_pandas()
    return Frame(df, vec)


def from_pandas(df: pd.DataFrame, vectors: tuple[str, ...] = VECTOR_COLUMNS) -> Frame:
    """Same as :func:`read_frame` for a frame already in memory (e.g. online features)."""
    vec = {}
    for name in vectors:
        if name in df:
            vec[name] = dense(
                pa.array(df[name].map(lambda v: None if v is None else list(v)), type=pa.list_(pa.float32()))
            )
    return Frame(df.drop(columns=list(vec)).reset_index(drop=True), vec)


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


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Cross features of user history and candidate, added in place and returned.

    Written once here and used by training, evaluation and serving alike.
    """

    def share(hist: pd.Series, value: pd.Series) -> np.ndarray:
        out = np.zeros(len(df), dtype=np.float32)
        for r, (h, v) in enumerate(zip(hist.to_numpy(), value.to_numpy(), strict=True)):
            if h is not None and len(h):
                out[r] = float(np.mean([x == v for x in h]))
        return out

    if "recent_categories" in df:
        top = df["category"].astype("string").str.split(" > ").str[0]
        df["hist_category_share"] = share(df["recent_categories"], df["category"])
        df["hist_top_share"] = share(
            df["recent_categories"].map(lambda h: None if h is None else [c.split(" > ")[0] for c in h]), top
        )
    if "user_price_pref" in df:
        df["price_vs_pref"] = np.log1p(df["price"].astype(float)) - np.log1p(
            df["user_price_pref"].astype(float)
        )
    return df
