"""The training table read for modelling: a time split and a few derived cross features.

Text embeddings are read straight from Arrow, never as Python objects, and kept once
per distinct text: a :class:`Vectors` is an (n,) code per row into a (u, dim) table.
800k impressions of 6k items and 6k queries hold 12k vectors instead of 1.6 million
(2.4 GB as dense float32), and a split or a batch only copies codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

VECTOR_COLUMNS = ("query_embedding", "item_embedding")
# the columns that identify a vector's text: rows with equal keys hold equal vectors
VECTOR_KEYS = {
    "query_embedding": ("query_id", "query_text_version"),
    "item_embedding": ("item_id", "item_text_version"),
}
READ_ROWS = 65_536  # rows per Arrow batch while deduplicating vectors


class Vectors:
    """(n, dim) vectors stored once each: ``table[codes]``. Row 0 of the table is zeros (null).

    Indexing with rows gives another Vectors over the same table; ``np.asarray`` gives
    the dense (n, dim) float32 array.
    """

    __slots__ = ("codes", "table")

    def __init__(self, codes: np.ndarray, table: np.ndarray):
        self.codes = np.asarray(codes, dtype=np.int32)
        self.table = np.asarray(table, dtype=np.float32)

    @classmethod
    def of(cls, matrix: np.ndarray | Vectors) -> Vectors:
        """Wrap a dense (n, dim) array (one table row per row; no deduplication)."""
        if isinstance(matrix, Vectors):
            return matrix
        m = np.asarray(matrix, dtype=np.float32)
        return cls(np.arange(1, len(m) + 1), np.concatenate([np.zeros((1, m.shape[1]), np.float32), m]))

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.codes), self.table.shape[1])

    def __getitem__(self, rows) -> Vectors:
        return Vectors(self.codes[rows], self.table)

    def dense(self) -> np.ndarray:
        return self.table[self.codes]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.dense()
        return out if dtype is None else out.astype(dtype)


def rowwise_cosine(a: np.ndarray | Vectors, b: np.ndarray | Vectors, chunk: int = READ_ROWS) -> np.ndarray:
    """cos(a[r], b[r]) per row, NaN where either is zero; dense in chunks only."""
    out = np.empty(len(a), dtype=np.float64)
    for lo in range(0, len(a), chunk):
        x, y = np.asarray(a[lo : lo + chunk]), np.asarray(b[lo : lo + chunk])
        norm = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        out[lo : lo + chunk] = np.where(norm > 0, (x * y).sum(axis=1) / np.maximum(norm, 1e-9), np.nan)
    return out


@dataclass
class Frame:
    """Scalar columns as pandas, text embeddings as :class:`Vectors` aligned with its rows."""

    df: pd.DataFrame
    vectors: dict[str, Vectors]

    def __post_init__(self) -> None:
        self.vectors = {k: Vectors.of(v) for k, v in self.vectors.items()}

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


def _key_strings(batch: pa.RecordBatch, keys: tuple[str, ...]) -> np.ndarray:
    parts = [batch.column(k).to_pandas().astype("string").fillna("").to_numpy(object) for k in keys]
    out = parts[0]
    for p in parts[1:]:
        out = out + "\x1f" + p
    return out


def read_vectors(file: pq.ParquetFile, name: str, keys: tuple[str, ...]) -> Vectors:
    """Column ``name`` deduplicated by its key columns, read in batches (peak: one batch)."""
    codes = np.zeros(file.metadata.num_rows, dtype=np.int32)
    index: dict[str, int] = {}
    rows: list[np.ndarray] = []
    at = 0
    for batch in file.iter_batches(batch_size=READ_ROWS, columns=[*keys, name]):
        col = batch.column(name)
        present = pc_lengths(col) > 0
        key = _key_strings(batch, keys)
        uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        new = [j for j, k in enumerate(uniq) if k not in index and present[first[j]]]
        if new:
            take = pa.array(first[new])
            rows.append(dense(col.take(take)))
            for j in new:
                index[uniq[j]] = len(index) + 1
        batch_codes = np.array([index.get(k, 0) for k in uniq], dtype=np.int32)[inverse]
        codes[at : at + len(batch)] = np.where(present, batch_codes, 0)
        at += len(batch)
    dim = rows[0].shape[1] if rows else 0
    return Vectors(codes, np.concatenate([np.zeros((1, dim), np.float32), *rows]))


def read_frame(
    path: Path | str, vectors: tuple[str, ...] = VECTOR_COLUMNS, rows: np.ndarray | None = None
) -> Frame:
    """The training table: scalar columns as pandas, vector columns as :class:`Vectors`.

    ``rows`` (ascending row numbers) keeps only those rows, read batch by batch: the peak
    is one batch plus what is kept, not the whole table (evaluation reads only the test split).
    """
    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    vec: dict[str, Vectors] = {}
    for name in (n for n in vectors if n in names):
        keys = VECTOR_KEYS.get(name, ())
        if keys and all(k in names for k in keys):
            vec[name] = read_vectors(file, name, keys)
        else:
            vec[name] = Vectors.of(dense(file.read(columns=[name]).column(name)))
        if rows is not None:
            vec[name] = vec[name][rows]
    scalars = [n for n in names if n not in vec]
    if rows is None:
        return Frame(file.read(columns=scalars).to_pandas(), vec)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) > 1 and (np.diff(rows) <= 0).any():
        raise ValueError("rows must be ascending and unique")
    kept, at = [], 0
    for batch in file.iter_batches(batch_size=READ_ROWS, columns=scalars):
        lo, hi = np.searchsorted(rows, [at, at + len(batch)])
        if hi > lo:
            kept.append(pa.Table.from_batches([batch]).take(pa.array(rows[lo:hi] - at)))
        at += len(batch)
    table = pa.concat_tables(kept) if kept else file.schema_arrow.empty_table().select(scalars)
    return Frame(table.to_pandas(), vec)


SPLIT_COLUMNS = ("request_id", "event_timestamp")


def read_split(
    path: Path | str, val_share: float, test_share: float
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """:func:`time_split` of a training table from its key columns only, and those columns."""
    keys = pq.read_table(path, columns=[*SPLIT_COLUMNS, "query"]).to_pandas()
    return time_split(keys, val_share, test_share), keys


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


QUERY_MATCH_COLUMNS = ("brand", "colour", "material", "size")


def query_mentions(query: np.ndarray, values: pd.Series) -> np.ndarray:
    """1.0 where the lower-cased ``query`` contains the row's value as a whole word, else 0.0."""
    vals = values.astype("string").fillna("").str.lower().to_numpy(object)
    out = np.zeros(len(vals), dtype=np.float32)
    for r, (q, v) in enumerate(zip(query, vals, strict=True)):
        if v and q and v in q:
            at = q.find(v)
            while at >= 0:  # whole words only: "red" is not in "shredder"
                end = at + len(v)
                if (at == 0 or not q[at - 1].isalnum()) and (end == len(q) or not q[end].isalnum()):
                    out[r] = 1.0
                    break
                at = q.find(v, at + 1)
    return out


# "boots under 50", "tent below $120": the price the shopper will not go over
PRICE_CAP = re.compile(r"\b(?:under|below|less than|cheaper than|up to|max)\s*[$£€]?\s*(\d+(?:\.\d+)?)\b")


def query_price_cap(query: str) -> float:
    """The price cap a (lower-cased) query names, NaN if none."""
    m = PRICE_CAP.search(query) if query else None
    return float(m.group(1)) if m else float("nan")


def over_price_cap(query: np.ndarray, price: np.ndarray) -> np.ndarray:
    """1.0 where the item's price exceeds the cap its row's query names, else 0.0.

    Sentence embeddings do not compare numbers: without this a "tents under 50" query
    cannot tell a 45 tent from a 150 one. Each distinct query is parsed once.
    """
    codes, uniq = pd.factorize(pd.Series(query, dtype=object), sort=False)
    caps = np.array([query_price_cap(q) for q in uniq], dtype=np.float64)[codes]
    price = np.asarray(price, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (price > caps).astype(np.float32)  # NaN cap or price compares False


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
    if "query" in df:  # does the query ask for what the item is? (brand, colour, material, size)
        query = df["query"].astype("string").fillna("").str.lower().to_numpy(object)
        for col in QUERY_MATCH_COLUMNS:
            if col in df:
                df[f"query_{col}_match"] = query_mentions(query, df[col])
        if "price" in df:
            df["query_over_price_cap"] = over_price_cap(query, df["price"].astype("float64").to_numpy())
    if "user_price_pref" in df:
        df["price_vs_pref"] = np.log1p(df["price"].astype(float)) - np.log1p(
            df["user_price_pref"].astype(float)
        )
    return df
