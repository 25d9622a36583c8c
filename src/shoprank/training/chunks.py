"""A split of the training table in bounded chunks: what streaming training reads.

A chunk is at most ``train.chunk_rows`` consecutive rows of the split, read from the
Parquet file batch by batch (text vectors deduplicated per chunk, as
:func:`~shoprank.inputs.frame.read_frame` does for the whole table) and given the
declared derived inputs by the same :func:`~shoprank.inputs.apply.derive` as any frame.
Whatever reads chunks holds one at a time, so its memory follows the chunk setting, not
the number of impressions. :class:`FrameChunks` gives the same interface over a frame
already in memory (tests, benchmarks, the small candidates).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shoprank.inputs.frame import (
    READ_ROWS,
    VECTOR_COLUMNS,
    VECTOR_KEYS,
    Frame,
    VectorIndex,
    Vectors,
    dense,
    same_width,
)


class Chunks:
    """The rows of a split, ``chunk_rows`` at a time; iterating reads every chunk once, in order."""

    chunk_rows: int
    rows: int  # rows of the split, all chunks together

    def __len__(self) -> int:
        return self.rows

    @property
    def n_chunks(self) -> int:
        return -(-self.rows // self.chunk_rows)

    def read(self, i: int) -> Frame:
        raise NotImplementedError

    def columns(self) -> list[str]:
        """The columns of every chunk, derived inputs included."""
        raise NotImplementedError

    def scan(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        """Only ``columns`` of every chunk (those the split has), without vectors or derived inputs."""
        for i in range(self.n_chunks):
            df = self.read(i).df
            yield df[[c for c in columns if c in df.columns]]

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.n_chunks):
            yield self.read(i)


class FrameChunks(Chunks):
    """Slices of a frame in memory (already derived by its caller)."""

    def __init__(self, frame: Frame, chunk_rows: int):
        if chunk_rows <= 0:
            raise ValueError(f"train.chunk_rows must be positive, not {chunk_rows}")
        self.frame, self.chunk_rows, self.rows = frame, chunk_rows, len(frame)

    def read(self, i: int) -> Frame:
        lo = i * self.chunk_rows
        if lo == 0 and self.rows <= self.chunk_rows:
            return self.frame  # one chunk: the frame itself, no copy
        return self.frame.take(np.arange(lo, min(lo + self.chunk_rows, self.rows)))

    def columns(self) -> list[str]:
        return list(self.frame.df.columns)

    def scan(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        yield self.frame.df[[c for c in columns if c in self.frame.df.columns]]


class FileChunks(Chunks):
    """Rows ``rows`` (ascending row numbers: a split) of the Parquet training table at ``path``.

    ``derive_with``: the keyword arguments of :func:`~shoprank.inputs.apply.derive` (the
    catalog's item texts, the filled attributes), applied to every chunk as to a whole frame.
    """

    def __init__(
        self,
        path: Path | str,
        rows: np.ndarray,
        chunk_rows: int,
        derive_with: Mapping[str, Any] | None = None,
    ):
        if chunk_rows <= 0:
            raise ValueError(f"train.chunk_rows must be positive, not {chunk_rows}")
        self.path, self.chunk_rows = Path(path), chunk_rows
        self.derive_with = dict(derive_with or {})
        self.split = np.asarray(rows, dtype=np.int64)
        if len(self.split) > 1 and (np.diff(self.split) <= 0).any():
            raise ValueError("rows must be ascending and unique")
        self.rows = len(self.split)
        self._only: Frame | None = None  # a split of one chunk is read once and kept, as in memory
        meta = pq.ParquetFile(self.path).metadata
        self.group_start = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])

    def _batches(self, i: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """The split's rows of chunk ``i``, batch by batch (only the row groups that hold them)."""
        keep = self.split[i * self.chunk_rows : (i + 1) * self.chunk_rows]
        first = int(np.searchsorted(self.group_start, keep[0], side="right")) - 1
        last = int(np.searchsorted(self.group_start, keep[-1], side="right")) - 1
        file = pq.ParquetFile(self.path)
        at = int(self.group_start[first])
        groups = list(range(first, last + 1))
        for batch in file.iter_batches(batch_size=READ_ROWS, row_groups=groups, columns=columns):
            lo, hi = np.searchsorted(keep, [at, at + len(batch)])
            if hi > lo:
                yield batch.take(pa.array(keep[lo:hi] - at))
            at += len(batch)
            if at > keep[-1]:
                break

    def read(self, i: int) -> Frame:
        if self._only is not None:
            return self._only
        frame = self._read(i)
        if self.n_chunks == 1:
            self._only = frame
        return frame

    def _read(self, i: int) -> Frame:
        from shoprank.inputs.apply import derive

        names = pq.ParquetFile(self.path).schema_arrow.names
        vector_names = [n for n in VECTOR_COLUMNS if n in names]
        keys = {n: VECTOR_KEYS.get(n, ()) for n in vector_names}
        keyed = {n: VectorIndex(n, k) for n, k in keys.items() if k and all(c in names for c in k)}
        plain: dict[str, list[np.ndarray]] = {n: [] for n in vector_names if n not in keyed}
        scalars = [n for n in names if n not in vector_names]
        parts = []
        for batch in self._batches(i, names):
            for index in keyed.values():
                index.add(batch)
            for n, pieces in plain.items():
                pieces.append(dense(batch.column(n)))
            parts.append(pa.Table.from_batches([batch.select(scalars)]))
        vec: dict[str, Vectors] = {n: index.vectors() for n, index in keyed.items()}
        vec.update({n: Vectors.of(np.concatenate(p)) for n, p in plain.items()})
        frame = Frame(pa.concat_tables(parts).to_pandas(), same_width(vec))
        return derive(frame, **self.derive_with)

    def columns(self) -> list[str]:
        head = FileChunks(self.path, self.split[:8], 8, self.derive_with)  # a few rows, derived
        return list(head.read(0).df.columns)

    def scan(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        names = pq.ParquetFile(self.path).schema_arrow.names
        wanted = [c for c in columns if c in names]
        for i in range(self.n_chunks):
            batches = list(self._batches(i, wanted))
            yield pa.Table.from_batches(batches).to_pandas() if batches else pd.DataFrame(columns=wanted)


def as_chunks(data: Frame | Chunks, chunk_rows: int) -> Chunks:
    """``data`` as chunks: a frame in memory is sliced, chunks pass through."""
    return data if isinstance(data, Chunks) else FrameChunks(data, chunk_rows)


def max_of(chunks: Chunks, column: str, default: float = 0.0) -> float:
    """The largest value of ``column`` over the split (``default`` where absent or empty)."""
    tops = [float(df[column].max()) for df in chunks.scan([column]) if column in df and len(df)]
    tops = [t for t in tops if not np.isnan(t)]
    return max(tops, default=default)
