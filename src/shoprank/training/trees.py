"""LightGBM on a split read in chunks: its tabular rows, sampled to at most ``lightgbm.max_rows``.

Each chunk is reduced to what the trees read (:func:`~shoprank.models.baselines.tabular`:
a few numbers and categories per row, no text vectors or histories), and a uniform sample
without replacement of at most ``max_rows`` rows is kept across chunks (every row gets a
seeded random key; the smallest keys are kept). Memory is then bounded by the sample and
one chunk. A sample rather than all rows because LightGBM's histogram algorithm holds its
whole binned training set in memory, whatever feeds it (a ``lightgbm.Sequence`` streams
the raw rows in, not the binned ones out), and trees on a few dozen inputs stop gaining
from rows long before millions. Keys are drawn in row order from one generator, so the
sample does not depend on the chunk size; a split within ``max_rows`` is kept whole, in
its order: the trees see what the in-memory path gave them.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from shoprank.logs import log
from shoprank.models.baselines import LightGBMModel, tabular
from shoprank.models.preprocess import FeatureSpec
from shoprank.training.chunks import Chunks

logger = logging.getLogger(__name__)


def sample_tabular(
    chunks: Chunks, spec: FeatureSpec, max_rows: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(LightGBM's inputs, labels) of at most ``max_rows`` rows of ``chunks``, a uniform sample."""
    rng = np.random.default_rng(seed)
    labels = [spec.label, spec.purchased]
    kept: list[tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]] = []
    at = 0
    for frame in chunks:
        key = rng.random(len(frame))
        x = tabular(frame, spec, None)
        y = frame.df[[c for c in labels if c in frame.df]]
        kept.append((x, y, key, np.arange(at, at + len(frame))))
        at += len(frame)
        if sum(len(k[2]) for k in kept) > max_rows:
            kept = [_smallest(kept, max_rows)]
    if not kept:
        raise ValueError("the split has no rows for LightGBM to learn from")
    x, y, _, _ = _smallest(kept, max_rows)
    if at > max_rows:
        log(logger, "lightgbm sample", rows=at, kept=len(x), max_rows=max_rows)
    return x, y


def _smallest(kept: list, n: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """The ``n`` rows with the smallest keys, in row order; categories re-made over all of them."""
    x = pd.concat([k[0] for k in kept], ignore_index=True)
    y = pd.concat([k[1] for k in kept], ignore_index=True)
    key, order = np.concatenate([k[2] for k in kept]), np.concatenate([k[3] for k in kept])
    if len(key) > n:
        pick = np.sort(np.argpartition(key, n - 1)[:n])
        x, y = x.iloc[pick].reset_index(drop=True), y.iloc[pick].reset_index(drop=True)
        key, order = key[pick], order[pick]
    for c in x.columns:
        if not pd.api.types.is_numeric_dtype(x[c]):  # chunks' categories differ: concat gave objects
            x[c] = x[c].astype("string").astype("category")
    return x, y, key, order


def fit_lightgbm(
    train: Chunks, val: Chunks, spec: FeatureSpec, rounds: int, seed: int, max_rows: int, purchase: bool
) -> LightGBMModel:
    """LightGBM (and its purchase booster) on samples of at most ``max_rows`` rows of each split."""
    return LightGBMModel(rounds=rounds, seed=seed).fit_tabular(
        sample_tabular(train, spec, max_rows, seed),
        sample_tabular(val, spec, max_rows, seed + 1),
        spec,
        purchase,
    )
