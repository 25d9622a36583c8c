"""Training-set columns -> model tensors, fitted on the training split only.

The same fitted :class:`Preprocessor` is saved with the model and used by evaluation
and serving, so offline and online inputs cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from shoprank.inputs.frame import Frame, Vectors
from shoprank.text.tokenizer import PackedTokenizer

UNKNOWN = 0  # code of unseen categories and of history padding


@dataclass
class FeatureSpec:
    """Which training-set columns feed which model input."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]  # ids included: an id is a categorical column with a frequency floor
    ids: tuple[str, ...] = ()
    query_embedding: str = "query_embedding"
    item_embedding: str = "item_embedding"
    history: str = "recent_items"  # array of item ids, most recent first
    item_id: str = "item_id"
    user_id: str = "user_id"
    item_text: str = "item_text"  # the texts the encoder tokenizes in fine-tune / LoRA modes
    query_text: str = "query_text"
    query: str = "query"  # "" for a feed: has_query
    position: str = "position"
    label: str = "clicked"
    purchased: str = "purchased"  # the purchase head's label (ESMM: over every impression)


def feature_spec(columns: list[str], candidate: str = "bert_ctr", ids: bool = True) -> FeatureSpec:
    """The declared inputs of ``candidate`` that a frame with ``columns`` holds, in declaration order.

    ``ids``: the id inputs (item and user embeddings) too; off when ``train.id_min_count`` is 0.
    """
    from shoprank.inputs.declare import present, texts

    have = [x for x in present(columns, candidate) if ids or x.kind != "id"]
    vectors = {x.entity: x.name for x in present(columns) if x.kind == "text_vector"}
    text = texts()
    id_names = tuple(x.name for x in have if x.kind == "id")
    return FeatureSpec(
        numeric=tuple(x.name for x in have if x.kind in ("numeric", "cross")),
        categorical=tuple(x.name for x in have if x.kind == "categorical") + id_names,
        ids=id_names,
        query_embedding=vectors.get("query", "query_embedding"),
        item_embedding=vectors.get("item", "item_embedding"),
        item_text=text["item"],
        query_text=text["query"],
    )


def vocabulary(values: pd.Series, min_count: int = 1) -> dict[str, int]:
    """Value -> code (1..) for values seen at least ``min_count`` times; the rest map to 0."""
    return codes_of(values.astype("string").value_counts(), min_count)


def codes_of(counts: pd.Series, min_count: int = 1) -> dict[str, int]:
    """Value -> code (1..), in sorted order, of the values counted at least ``min_count`` times."""
    frequent = sorted(counts.index[counts >= min_count])
    return {v: i + 1 for i, v in enumerate(frequent)}


@dataclass
class Moments:
    """Count, mean and sum of squared deviations of a column's non-null values, merged chunk by
    chunk (Chan et al.'s pairwise update: as exact as one pass over all values)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: np.ndarray) -> None:
        x = x[~np.isnan(x)]
        if not len(x):
            return
        mean = float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        n = self.n + len(x)
        delta = mean - self.mean
        self.mean += delta * len(x) / n
        self.m2 += m2 + delta * delta * self.n * len(x) / n
        self.n = n

    @property
    def std(self) -> float:
        """The sample standard deviation (pandas' ``std``); 1.0 where it is 0 or undefined."""
        std = (self.m2 / (self.n - 1)) ** 0.5 if self.n > 1 else 0.0
        return std if std > 0 else 1.0


@dataclass
class Preprocessor:
    spec: FeatureSpec
    vocab: dict[str, dict[str, int]] = field(default_factory=dict)  # column -> value -> code (1..)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    item_rows: dict[str, int] = field(default_factory=dict)  # item id -> row of the item table (1..)
    tokenizer: PackedTokenizer | None = None  # fine-tune / LoRA modes: texts become token ids
    id_min_count: int = 1  # training rows an id needs for a code of its own; rarer ids share code 0

    def fit(self, df: pd.DataFrame, item_ids: list[str]) -> Preprocessor:
        """Learn vocabularies and scalings from the training split ``df``."""
        return self.fit_chunks([df], item_ids)

    def fit_chunks(self, chunks: Iterable[pd.DataFrame], item_ids: list[str]) -> Preprocessor:
        """Learn vocabularies and scalings from the training split, one chunk at a time.

        Value counts and moments are merged across chunks, so any chunking gives the
        vocabularies and (to rounding) the statistics of one pass over the whole split.
        An id column keeps the ids seen ``id_min_count`` times; the others map to code 0,
        the row unseen values use too, so that row is learned from the rare ids.
        """
        counts: dict[str, pd.Series] = {}
        moments = {col: Moments() for col in self.spec.numeric}
        for df in chunks:
            for col in self.spec.categorical:
                c = df[col].astype("string").fillna("<na>").value_counts()
                counts[col] = c if col not in counts else counts[col].add(c, fill_value=0)
            for col in self.spec.numeric:
                moments[col].add(df[col].astype("float64").to_numpy())
        for col in self.spec.categorical:
            floor = self.id_min_count if col in self.spec.ids else 1
            self.vocab[col] = codes_of(counts.get(col, pd.Series(dtype="int64")), floor)
        for col, m in moments.items():
            self.mean[col], self.std[col] = m.mean, m.std
        self.item_rows = {item: i + 1 for i, item in enumerate(item_ids)}
        return self

    @property
    def reads_text(self) -> bool:
        """Does the network tokenize texts (fine-tune, LoRA) rather than read their vectors?"""
        return self.tokenizer is not None

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(len(self.vocab[c]) + 1 for c in self.spec.categorical)

    def transform(self, frame: Frame, history_length: int) -> dict[str, np.ndarray | Vectors]:
        """Arrays for :class:`TensorData` (vectors stay deduplicated); unseen values map to 0."""
        s, df = self.spec, frame.df
        out: dict[str, np.ndarray | Vectors] = {}
        if s.categorical:
            out["cat"] = np.stack(
                [
                    df[c]
                    .astype("string")
                    .fillna("<na>")
                    .map(self.vocab[c])
                    .fillna(UNKNOWN)
                    .to_numpy(np.int64)
                    for c in s.categorical
                ],
                axis=1,
            )
        if s.numeric:
            out["num"] = np.stack(
                [
                    ((df[c].astype("float64") - self.mean[c]) / self.std[c])
                    .fillna(0.0)
                    .clip(-10, 10)
                    .to_numpy()
                    for c in s.numeric
                ],
                axis=1,
            ).astype(np.float32)
        if s.query_embedding in frame.vectors:
            out["q_emb"] = frame.vectors[s.query_embedding]
            out["i_emb"] = frame.vectors[s.item_embedding]
        out["has_query"] = (df[s.query].fillna("") != "").to_numpy(np.float32)
        out["hist"] = self.history(df.get(s.history), len(df), history_length)
        if self.tokenizer is not None:  # fine-tune / LoRA: the encoder reads tokens
            out["q_ids"], out["q_mask"] = self.tokenizer(text_column(df, s.query_text))
            out["i_ids"], out["i_mask"] = self.tokenizer(text_column(df, s.item_text))
        n = len(df)
        out["position"] = (
            df[s.position].fillna(0).to_numpy(np.int64) if s.position in df else np.zeros(n, np.int64)
        )
        out["label"] = df[s.label].to_numpy(np.float32) if s.label in df else np.zeros(n, np.float32)
        if s.purchased in df:
            out["purchased"] = df[s.purchased].fillna(0).to_numpy(np.float32)
        return out

    def history(self, column: pd.Series | None, n: int, length: int) -> np.ndarray:
        hist = np.zeros((n, length), dtype=np.int64)
        if column is None:
            return hist
        rows = self.item_rows
        for r, items in enumerate(column.to_numpy()):
            if items is None or len(items) == 0:
                continue
            codes = [rows.get(i, UNKNOWN) for i in list(items)[:length]]
            hist[r, : len(codes)] = codes
        return hist


def text_column(df: pd.DataFrame, name: str) -> list[str]:
    """A text input's values (``""`` where missing: a feed's query); an error names the absent column."""
    if name not in df:
        raise KeyError(f"{name!r} missing: a fine-tuned BERT-CTR tokenizes it (see shoprank.inputs.texts)")
    return df[name].astype("string").fillna("").tolist()


class TensorData(torch.utils.data.Dataset):
    """Index-able dict of tensors; batches are dicts the model takes directly.

    A :class:`~shoprank.inputs.frame.Vectors` input stays deduplicated: its codes are
    indexed and its table rows gathered per batch, never densified for the whole split.
    """

    def __init__(self, arrays: dict[str, np.ndarray | Vectors]):
        self.tensors: dict[str, torch.Tensor] = {}
        self.tables: dict[str, torch.Tensor] = {}
        for k, v in arrays.items():
            if isinstance(v, Vectors):
                self.tensors[k] = torch.from_numpy(v.codes.astype(np.int64))
                self.tables[k] = torch.from_numpy(np.ascontiguousarray(v.table))
            else:
                self.tensors[k] = torch.from_numpy(np.ascontiguousarray(v))
        self.n = len(next(iter(self.tensors.values())))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx):
        batch = {k: v[idx] for k, v in self.tensors.items()}
        for k, table in self.tables.items():
            batch[k] = table[batch[k]]
        return batch


def loader(data: TensorData, batch_size: int, shuffle: bool, seed: int = 0) -> torch.utils.data.DataLoader:
    """Batches as whole-tensor slices (no per-row collation, which dominates for small rows)."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

    base = (
        RandomSampler(data, generator=torch.Generator().manual_seed(seed))
        if shuffle
        else SequentialSampler(data)
    )
    return DataLoader(data, sampler=BatchSampler(base, batch_size, drop_last=False), batch_size=None)
