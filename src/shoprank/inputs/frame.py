"""The frame that carries model inputs: scalar columns in pandas, text embeddings deduplicated.

Text embeddings are read straight from Arrow, never as Python objects, and kept once
per distinct text: a :class:`Vectors` is an (n,) code per row into a (u, dim) table, so
a table of many impressions over few distinct texts holds one vector per text, and a
split or a batch only copies codes.
"""

from __future__ import annotations

from collections.abc import Mapping
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


class Frame:
    """Scalar columns as pandas, text embeddings as :class:`Vectors` aligned with its rows."""

    __slots__ = ("df", "vectors")

    def __init__(self, df: pd.DataFrame, vectors: Mapping[str, np.ndarray | Vectors]):
        self.df = df
        self.vectors: dict[str, Vectors] = {k: Vectors.of(v) for k, v in vectors.items()}

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


class VectorIndex:
    """One vector column deduplicated by its key columns as batches arrive (peak: one batch)."""

    def __init__(self, name: str, keys: tuple[str, ...]):
        self.name, self.keys = name, keys
        self.index: dict[str, int] = {}
        self.rows: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []

    def add(self, batch: pa.RecordBatch) -> None:
        col = batch.column(self.name)
        present = pc_lengths(col) > 0
        key = _key_strings(batch, self.keys)
        uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        new = [j for j, k in enumerate(uniq) if k not in self.index and present[first[j]]]
        if new:
            self.rows.append(dense(col.take(pa.array(first[new]))))
            for j in new:
                self.index[uniq[j]] = len(self.index) + 1
        batch_codes = np.array([self.index.get(k, 0) for k in uniq], dtype=np.int32)[inverse]
        self.codes.append(np.where(present, batch_codes, 0).astype(np.int32))

    def vectors(self) -> Vectors:
        dim = self.rows[0].shape[1] if self.rows else 0
        codes = np.concatenate(self.codes) if self.codes else np.zeros(0, np.int32)
        return Vectors(codes, np.concatenate([np.zeros((1, dim), np.float32), *self.rows]))


def read_vectors(file: pq.ParquetFile, name: str, keys: tuple[str, ...]) -> Vectors:
    """Column ``name`` deduplicated by its key columns, read in batches (peak: one batch)."""
    index = VectorIndex(name, keys)
    for batch in file.iter_batches(batch_size=READ_ROWS, columns=[*keys, name]):
        index.add(batch)
    return index.vectors()


def same_width(vec: dict[str, Vectors]) -> dict[str, Vectors]:
    """A column with no vector at all (no query in a log of feeds) gets the encoder's width in zeros.

    Query and item texts share the encoder, so the other column says how wide it is.
    """
    width = max((v.table.shape[1] for v in vec.values()), default=0)
    return {
        k: v if v.table.shape[1] else Vectors(v.codes, np.zeros((len(v.table), width), np.float32))
        for k, v in vec.items()
    }


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
    vec = same_width(vec)
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
